import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import type express from 'express';
import type { Redis } from 'ioredis';
import { requiresAdmin, requiresTeamRole } from '../../lib/http/guards';
import { createLogger } from '../../lib/log';
import { connectRedis } from '../../lib/store';
import { FakeBitbucket } from '../../lib/testing';
import { AUTOMATION_PREFIX, mintSecret, wellFormed } from '../../lib/tokens/automation';
import { loginAs, tokenRequest } from '../harness/login';
import { startNode, testRedis, type TestNode } from '../harness/node';

/**
 * Automation tokens (README "Automation tokens"): an owner makes one for a role on their team; it
 * passes that team's role routes and nothing else, on every node, until it is revoked, expires or its
 * team is deleted; its secret is shown once and stored nowhere.
 */
jest.setTimeout(60_000);

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
const logged: string[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    logged.push(chunk.toString('utf8'));
    done();
  },
});

/** Host routes behind sky's guards, as a CI server's API would have them. */
const routes = (app: express.Express): void => {
  const ok: express.RequestHandler = (_req, res) => void res.json({ ok: true });
  app.get('/ci/:team/pipelines', requiresTeamRole('pipeline-operator'), ok);
  app.get('/ci/:team/settings', requiresTeamRole('member'), ok);
  app.get('/ci/admin', requiresAdmin(), ok);
};

let fake: FakeBitbucket;
let one: TestNode;
let two: TestNode;
const bearers: Record<string, { authorization: string }> = {};
beforeAll(async () => {
  fake = await FakeBitbucket.start();
  one = await startNode({ fake, routes, options: { signingKey, logger: createLogger('trace', sink) } });
  two = await startNode({ fake, routes, options: { signingKey, keyPrefix: one.prefix } });
  for (const user of ['alice', 'bob', 'carol']) {
    if (user !== 'alice') await one.putTeam(`team-${user}`, { viewer: { users: [user] } });
    bearers[user] = (await loginAs(one.url, fake, user)).bearer;
  }
});
afterAll(async () => {
  await two?.close();
  await one?.close();
  await fake?.stop();
});

const json = { 'content-type': 'application/json' };
const auth = (user: string): { authorization: string } => bearers[user] as { authorization: string };
async function create(
  node: TestNode,
  team: string,
  as: string,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${node.url}/api/v1/teams/${team}/tokens`, {
    method: 'POST',
    headers: { ...auth(as), ...json },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const statusOf = async (
  node: TestNode,
  path: string,
  token: string,
  init: RequestInit = {},
): Promise<number> =>
  (
    await fetch(`${node.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...init.headers },
    })
  ).status;

/** Polls until `path` answers `status` on `node`; resolves how long it took (ms). */
async function until(node: TestNode, path: string, token: string, status: number): Promise<number> {
  const started = Date.now();
  while ((await statusOf(node, path, token)) !== status) {
    if (Date.now() - started > 5_000) throw new Error(`${path} never answered ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

async function team(name: string): Promise<void> {
  await one.putTeam(name, { owner: { users: ['bob'] }, member: { users: ['carol'] } });
}

test('the secret: a recognisable prefix, a checksum, and a single flipped character fails it', () => {
  const secret = mintSecret();
  expect(secret).toMatch(/^sky_at_[0-9A-Za-z]{46}$/);
  expect(wellFormed(secret)).toBe(true);
  const last = secret.at(-1) === 'a' ? 'b' : 'a';
  expect(wellFormed(secret.slice(0, -1) + last)).toBe(false);
  expect(wellFormed(`${AUTOMATION_PREFIX}short`)).toBe(false);
});

test('an owner’s pipeline-operator token passes exactly that team and role, and nothing of a person', async () => {
  await team('ci');
  await team('other');
  const made = await create(one, 'ci', 'bob', {
    name: 'deploy-bot',
    role: 'pipeline-operator',
    expires_in: '30d',
  });
  expect(made.status).toBe(201);
  const secret = String(made.body['token']);
  expect(wellFormed(secret)).toBe(true);
  expect(made.body).toMatchObject({ team: 'ci', name: 'deploy-bot', role: 'pipeline-operator' });
  const days = (Date.parse(String(made.body['expires_at'])) - Date.now()) / 86_400_000;
  expect(days).toBeGreaterThan(29.9);
  expect(days).toBeLessThan(30.1);

  expect(await statusOf(one, '/ci/ci/pipelines', secret)).toBe(200);
  expect(await statusOf(two, '/ci/ci/pipelines', secret)).toBe(200);
  expect(await statusOf(one, '/api/v1/teams/ci', secret)).toBe(200); // viewer: included
  expect(await statusOf(one, '/ci/ci/settings', secret)).toBe(403); // member: above its role
  expect(await statusOf(one, '/ci/other/pipelines', secret)).toBe(403); // another team
  expect(await statusOf(one, '/ci/admin', secret)).toBe(401);
  expect(await statusOf(one, '/api/v1/user', secret)).toBe(401);
  expect(await statusOf(one, '/api/v1/teams', secret)).toBe(401);
  const write = { method: 'PUT', headers: json, body: JSON.stringify({ auth: { owner: { users: ['x'] } } }) };
  expect(await statusOf(one, '/api/v1/teams/ci', secret, write)).toBe(401);
  expect(await statusOf(one, '/api/v1/teams/ci/tokens', secret)).toBe(401);
  expect(await statusOf(one, '/api/v1/teams/ci', secret, { method: 'DELETE' })).toBe(401);
  // Never a refresh token.
  const refresh = await tokenRequest(one.url, { grant_type: 'refresh_token', refresh_token: secret });
  expect(refresh.status).toBe(400);
  expect(refresh.body['error']).toBe('invalid_grant');
});

test('who may make one: owners and admins; members and viewers get 403; bad input gets a 400 that names it', async () => {
  await team('who');
  expect((await create(one, 'who', 'carol', { name: 'bot', role: 'viewer' })).status).toBe(403);
  expect((await create(one, 'team-carol', 'carol', { name: 'bot', role: 'viewer' })).status).toBe(403);
  const owner = await create(one, 'who', 'bob', { name: 'owner-bot', role: 'owner' });
  expect(owner.status).toBe(201); // an owner's own role is the most they may give
  expect((await create(one, 'who', 'alice', { name: 'admin-bot', role: 'member' })).status).toBe(201);
  expect((await create(one, 'nosuch', 'alice', { name: 'bot', role: 'member' })).status).toBe(404);
  const refusals: [Record<string, unknown>, RegExp][] = [
    [{ name: 'bot', role: 'admin' }, /invalid role 'admin'/],
    [{ name: 'Bad Name', role: 'viewer' }, /invalid token name/],
    [{ name: 'x'.repeat(65), role: 'viewer' }, /invalid token name/],
    [{ name: 'bot', role: 'viewer', expires_in: '100000d' }, /invalid expires_in/],
    [{ name: 'bot', role: 'viewer', expires_in: 'soon' }, /invalid expires_in/],
    [{ name: 'bot', role: 'viewer', expires_in: -5 }, /invalid expires_in/],
  ];
  for (const [body, message] of refusals) {
    const answer = await create(one, 'who', 'bob', body);
    expect(answer.status).toBe(400);
    expect(JSON.stringify(answer.body)).toMatch(message);
  }
  const again = await create(one, 'who', 'bob', { name: 'owner-bot', role: 'viewer' });
  expect(again.status).toBe(409);
  // A default expiry of 90 days.
  const plain = await create(one, 'who', 'bob', { name: 'plain', role: 'viewer' });
  const days = (Date.parse(String(plain.body['expires_at'])) - Date.now()) / 86_400_000;
  expect(Math.round(days)).toBe(90);
});

test('revoked on one node: refused on the other within 1 s; the list shows it no more', async () => {
  await team('rev');
  const secret = String((await create(one, 'rev', 'bob', { name: 'bot', role: 'viewer' })).body['token']);
  expect(await statusOf(two, '/api/v1/teams/rev', secret)).toBe(200); // cached on node two
  const list = await fetch(`${one.url}/api/v1/teams/rev/tokens`, { headers: auth('bob') });
  const listed = (await list.json()) as Record<string, unknown>[];
  expect(listed).toEqual([
    expect.objectContaining({
      name: 'bot',
      role: 'viewer',
      created_by: expect.any(String),
      last_used_at: null,
    }),
  ]);
  expect(JSON.stringify(listed)).not.toContain(secret);
  const revoked = await fetch(`${one.url}/api/v1/teams/rev/tokens/bot`, {
    method: 'DELETE',
    headers: auth('bob'),
  });
  expect(revoked.status).toBe(204);
  expect(await until(two, '/api/v1/teams/rev', secret, 401)).toBeLessThan(1_000);
  expect(await statusOf(one, '/api/v1/teams/rev', secret)).toBe(401);
  const gone = await fetch(`${one.url}/api/v1/teams/rev/tokens/bot`, {
    method: 'DELETE',
    headers: auth('bob'),
  });
  expect(gone.status).toBe(404);
  // One audit event each, readable by the team's owner; the secret in none.
  const trail = await fetch(`${one.url}/api/v1/audit?team=rev`, { headers: auth('bob') });
  const events = (await trail.json()) as { action: string; detail: Record<string, unknown> }[];
  expect(events.map((e) => [e.action, e.detail['name']])).toEqual([
    ['token.revoke', 'bot'],
    ['token.create', 'bot'],
  ]);
  expect(JSON.stringify(events)).not.toContain(secret);
});

test('its team deleted: refused on the other node within 1 s, and a new team of that name does not inherit it', async () => {
  await team('gone');
  const secret = String((await create(one, 'gone', 'bob', { name: 'bot', role: 'viewer' })).body['token']);
  expect(await statusOf(two, '/api/v1/teams/gone', secret)).toBe(200);
  const deleted = await fetch(`${one.url}/api/v1/teams/gone`, {
    method: 'DELETE',
    headers: auth('alice'),
  });
  expect(deleted.status).toBe(204);
  expect(await until(two, '/ci/gone/pipelines', secret, 401)).toBeLessThan(1_000);
  await team('gone');
  expect(await statusOf(two, '/api/v1/teams/gone', secret)).toBe(401);
  expect(await statusOf(one, '/api/v1/teams/gone', secret)).toBe(401);
});

test('expired: refused on both nodes at once', async () => {
  await team('short');
  const made = await create(one, 'short', 'bob', { name: 'bot', role: 'viewer', expires_in: 61 });
  const secret = String(made.body['token']);
  expect(await statusOf(two, '/api/v1/teams/short', secret)).toBe(200);
  // Not waited out here: the record's expiry is what each node compares with its clock (unit below).
  const redis = connectRedis(testRedis());
  try {
    const key = `${one.prefix}{at}:tokens`;
    const records = await redis.hgetall(key);
    const [id, record] = Object.entries(records).find(([, v]) => v.includes('"team":"short"')) ?? [];
    expect(id).toBeDefined();
    // Its record says it expired a second ago (what the clock would say 61 s later), and both nodes drop their copy.
    const past = { ...(JSON.parse(record ?? '{}') as Record<string, unknown>), expires: Date.now() - 1000 };
    await redis.hset(key, id ?? '', JSON.stringify(past));
    await redis.publish(`${one.prefix}events`, JSON.stringify({ type: 'automation-token', id }));
  } finally {
    await redis.quit();
  }
  expect(await until(two, '/api/v1/teams/short', secret, 401)).toBeLessThan(1_000);
  expect(await statusOf(one, '/api/v1/teams/short', secret)).toBe(401);
});

test('a bad checksum is refused without a Redis lookup; the secret is nowhere but in the create answer', async () => {
  await team('secret');
  const made = await create(one, 'secret', 'bob', { name: 'bot', role: 'viewer' });
  const secret = String(made.body['token']);
  expect(await statusOf(one, '/api/v1/teams/secret', secret)).toBe(200);
  const forged = secret.slice(0, -1) + (secret.at(-1) === 'a' ? 'b' : 'a');
  if (!process.env['SKY_REDIS_CLUSTER']) {
    const monitor = await (connectRedis(testRedis()) as Redis).monitor();
    const commands: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => commands.push(args.join(' ')));
    try {
      expect(await statusOf(two, '/api/v1/teams/secret', forged)).toBe(401);
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      monitor.disconnect();
    }
    expect(commands.filter((c) => c.includes('{at}'))).toEqual([]);
  }
  // Redis: every key and value of this node's prefix.
  const redis = connectRedis(testRedis());
  try {
    const keys = process.env['SKY_REDIS_CLUSTER'] ? [] : await redis.keys(`${one.prefix}*`);
    for (const key of keys) {
      const type = await redis.type(key);
      const dump =
        type === 'hash'
          ? JSON.stringify(await redis.hgetall(key))
          : type === 'string'
            ? ((await redis.get(key)) ?? '')
            : type === 'stream'
              ? JSON.stringify(await redis.xrange(key, '-', '+'))
              : type === 'set'
                ? JSON.stringify(await redis.smembers(key))
                : type === 'zset'
                  ? JSON.stringify(await redis.zrange(key, '0', '-1'))
                  : '';
      expect(dump.includes(secret.slice(AUTOMATION_PREFIX.length))).toBe(false);
    }
  } finally {
    await redis.quit();
  }
  expect(logged.join('').includes(secret.slice(AUTOMATION_PREFIX.length))).toBe(false);
});
