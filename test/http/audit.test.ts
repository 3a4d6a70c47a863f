import { Writable } from 'node:stream';
import type { AuditEvent } from '../../lib/audit/trail';
import { createLogger } from '../../lib/log';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { cliLoginAs, loginAs, tokenRequest } from '../harness/login';
import { startNode, type TestNode } from '../harness/node';

/**
 * The audit trail (README "Audit trail"): each audited action leaves exactly one event with who, what,
 * which team, when, the request id and the node, in Redis and as one log line; admins read every event,
 * a team's owners only that team's, others nothing.
 */
jest.setTimeout(60_000);

const lines: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split('\n'))
      if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  },
});

let fake: FakeBitbucket;
let node: TestNode;
const bearer: Record<string, { authorization: string }> = {};
const as = (user: string): { authorization: string } => bearer[user] as { authorization: string };
beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake, options: { logger: createLogger('info', sink) } });
  await node.putTeam('team-bob', { owner: { users: ['bob'] } });
  await node.putTeam('team-carol', { viewer: { users: ['carol'] } });
  for (const user of ['alice', 'bob', 'carol']) bearer[user] = (await loginAs(node.url, fake, user)).bearer;
});
afterAll(async () => {
  await node?.close();
  await fake?.stop();
});

async function audit(user: string, query = ''): Promise<{ status: number; events: AuditEvent[] }> {
  const res = await fetch(`${node.url}/api/v1/audit${query}`, { headers: as(user) });
  const body: unknown = await res.json();
  return { status: res.status, events: res.ok ? (body as AuditEvent[]) : [] };
}

/** The admin's view of the events after `since` (an event id) matching `match`, once there are `n` (within 2 s). */
async function eventsAfter(since: string, match: (e: AuditEvent) => boolean, n = 1): Promise<AuditEvent[]> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const found = (await audit('alice', '?limit=1000')).events.filter(
      (e) => idAfter(e.id, since) && match(e),
    );
    if (found.length >= n || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 20));
  }
}
const idAfter = (a: string, b: string): boolean => {
  const [am = 0, as_ = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am > bm || (am === bm && as_ > bs);
};
const latestId = async (): Promise<string> => (await audit('alice', '?limit=1')).events[0]?.id ?? '0-0';

const json = { 'content-type': 'application/json' };
const putTeam = (user: string, team: string, auth: unknown): Promise<Response> =>
  fetch(`${node.url}/api/v1/teams/${team}`, {
    method: 'PUT',
    headers: { ...as(user), ...json },
    body: JSON.stringify({ auth }),
  });

test('a team created, changed and deleted: one event each, with the change per role, the actor and the request id', async () => {
  const since = await latestId();
  expect(
    (await putTeam('alice', 'audited', { owner: { users: ['bob'] }, viewer: { users: ['carol'] } })).status,
  ).toBe(201);
  const updated = await putTeam('bob', 'audited', {
    owner: { users: ['bob'] },
    member: { users: ['carol'] },
  });
  expect(updated.status).toBe(200);
  const requestId = updated.headers.get('x-request-id');
  expect(
    (await fetch(`${node.url}/api/v1/teams/audited`, { method: 'DELETE', headers: as('alice') })).status,
  ).toBe(204);

  const events = (await eventsAfter(since, (e) => e.team === 'audited', 3)).reverse();
  expect(events.map((e) => e.action)).toEqual(['team.create', 'team.update', 'team.delete']);
  const [created, update, deleted] = events;
  expect(created).toMatchObject({
    actor: {
      sub: expect.stringMatching(/^bitbucket-cloud:/),
      name: expect.any(String),
      connector: 'bitbucket-cloud',
    },
    detail: {
      changes: {
        owner: { added: { users: ['bitbucket-cloud:bob'], groups: [] }, removed: { users: [], groups: [] } },
        viewer: {
          added: { users: ['bitbucket-cloud:carol'], groups: [] },
          removed: { users: [], groups: [] },
        },
      },
    },
  });
  expect(update).toMatchObject({
    actor: { name: expect.stringMatching(/bob/i) },
    request_id: requestId,
    detail: {
      changes: {
        member: { added: { users: ['bitbucket-cloud:carol'], groups: [] } },
        viewer: { removed: { users: ['bitbucket-cloud:carol'], groups: [] } },
      },
    },
  });
  expect(Object.keys(update?.detail['changes'] as object).sort()).toEqual(['member', 'viewer']);
  expect(deleted?.detail).toMatchObject({ tokens_revoked: [] });
  for (const event of events) {
    expect(event).toEqual({
      id: expect.stringMatching(/^\d+-\d+$/),
      time: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
      action: expect.any(String),
      actor: expect.any(Object),
      team: 'audited',
      request_id: expect.any(String),
      node: expect.stringMatching(/:\d+$/),
      detail: expect.any(Object),
    });
    // One log line each, the same event.
    expect(
      lines.filter((l) => {
        const logged = l['audit'] as Record<string, unknown> | undefined;
        return logged?.['time'] === event.time && logged['action'] === event.action;
      }),
    ).toHaveLength(1);
  }
});

test('admins read every event; an owner only their team’s; others 403; bad parameters 400', async () => {
  await putTeam('bob', 'team-bob', { owner: { users: ['bob'] }, viewer: { users: ['erin'] } });
  await putTeam('alice', 'team-carol', { viewer: { users: ['carol', 'erin'] } });
  const owner = await audit('bob');
  expect(owner.status).toBe(200);
  expect(owner.events.length).toBeGreaterThan(0);
  expect(new Set(owner.events.map((e) => e.team))).toEqual(new Set(['team-bob']));
  expect((await audit('bob', '?team=team-carol')).status).toBe(403);
  expect((await audit('carol')).status).toBe(403);
  const all = await audit('alice', '?limit=1000');
  expect(all.events.some((e) => e.team === 'team-carol')).toBe(true);
  expect(all.events.some((e) => e.team === null)).toBe(true); // logins
  expect((await audit('alice', '?team=team-carol')).events.every((e) => e.team === 'team-carol')).toBe(true);
  expect((await audit('alice', '?limit=2')).events).toHaveLength(2);
  expect((await audit('alice', '?since=1h')).events.length).toBeGreaterThan(0);
  const future = new Date(Date.now() + 60_000).toISOString();
  expect((await audit('alice', `?since=${future}`)).events).toEqual([]);
  for (const query of [
    '?limit=0',
    '?limit=5000',
    '?limit=x',
    '?since=yesterday',
    '?team=Bad%20Name',
    '?limit=1&limit=2',
  ]) {
    const res = await fetch(`${node.url}/api/v1/audit${query}`, { headers: as('alice') });
    expect([query, res.status]).toEqual([query, 400]);
  }
  expect((await fetch(`${node.url}/api/v1/audit`)).status).toBe(401);
});

test('logins, a refusal, a logout, a reused refresh token and a user-wide revocation: one event each', async () => {
  const since = await latestId();
  const bob = await loginAs(node.url, fake, 'bob');
  fake.consentAs('dave'); // in no team: refused
  const refused = await new Browser().follow(`${node.url}/sky/login`, 3);
  expect(refused[2]?.status).toBe(403);
  expect((await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: bob.bearer })).status).toBe(204);
  const carol = await cliLoginAs(node.url, fake, 'carol');
  const first = await tokenRequest(node.url, {
    grant_type: 'refresh_token',
    refresh_token: carol.refreshToken,
  });
  expect(first.status).toBe(200);
  const reuse = await tokenRequest(node.url, {
    grant_type: 'refresh_token',
    refresh_token: carol.refreshToken,
  });
  expect(reuse.status).toBe(400);
  const again = await cliLoginAs(node.url, fake, 'carol');
  fake.revokeGrant('carol');
  expect(
    (await tokenRequest(node.url, { grant_type: 'refresh_token', refresh_token: again.refreshToken })).status,
  ).toBe(400);

  const events = (await eventsAfter(since, () => true, 7)).reverse();
  expect(events.map((e) => e.action)).toEqual([
    'login.success',
    'login.refusal',
    'logout',
    'login.success',
    'family.end',
    'login.success',
    'user.revoke',
  ]);
  expect(events[1]?.detail).toMatchObject({ reason: 'not_in_any_team' });
  expect(events[1]?.actor).toMatchObject({ connector: 'bitbucket-cloud' });
  expect(events[2]?.actor).toMatchObject({ name: expect.stringMatching(/bob/i) });
  expect(events[6]?.detail).toMatchObject({ sub: expect.stringContaining('bitbucket-cloud:') });
});

test('a local user’s wrong password is one password.failure, naming the user only when it is configured', async () => {
  // A node with a local user, writing to the same trail.
  const local = await startNode({
    fake,
    options: { keyPrefix: node.prefix, localUsers: ['breakglass:correct-horse-battery'] },
  });
  const since = await latestId();
  try {
    for (const username of ['breakglass', 'not-a-user-maybe-a-password']) {
      const answer = await tokenRequest(local.url, { grant_type: 'password', username, password: 'wrong' });
      expect(answer.status).toBe(400);
    }
  } finally {
    await local.close();
  }
  const events = (await eventsAfter(since, () => true, 2)).reverse();
  expect(events.map((e) => [e.action, e.detail['user']])).toEqual([
    ['password.failure', 'breakglass'],
    ['password.failure', '(not a configured user)'],
  ]);
  expect(JSON.stringify(events)).not.toContain('wrong');
  expect(JSON.stringify(events)).not.toContain('maybe-a-password');
});
