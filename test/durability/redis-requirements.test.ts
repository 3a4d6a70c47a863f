import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { recordFigures } from '../harness/figures';
import { freePort, redisServerBinary, waitForPort } from '../harness/global-setup';
import { loginAs, type LoggedIn } from '../harness/login';
import { testPrefix } from '../harness/node';
import { fakeBitbucketEnv, spawnWebNode, type NodeProcess } from '../harness/process';
import { PrivateRedis } from '../harness/redis-server';
import { msUntil } from '../harness/poll';

/**
 * What sky needs of its Redis (SPEC §8; issue #15, "Must show" 2 and the settings check): a Redis that
 * may lose sky's keys (no persistence, an evicting maxmemory-policy) stops start-up with a message that
 * names the setting, the fix and the opt-out; with the opt-out (SKY_REDIS_CHECKS=warn) the node runs
 * degraded, and a real eviction of its revocation and team keys lets no revoked token through. Where
 * CONFIG is forbidden a warning says what could not be checked; a full Redis is reported as full.
 */
jest.setTimeout(60_000);

let fake: FakeBitbucket;
/** Everything a test started, undone after it (and after all, should a test fail half way). */
const cleanups: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
async function cleanUp(): Promise<void> {
  while (cleanups.length > 0) {
    try {
      await cleanups.pop()?.();
    } catch {
      // already gone
    }
  }
}
afterEach(cleanUp);
afterAll(async () => {
  await cleanUp();
  await fake?.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function privateRedis(...settings: [string, string][]): Promise<PrivateRedis> {
  const redis = await PrivateRedis.start();
  cleanups.push(() => redis.stop());
  for (const [name, value] of settings) await redis.command(['CONFIG', 'SET', name, value]);
  return redis;
}

/** A web node's environment on `redisUrl` with a key prefix of its own, listening on `port`. */
function nodeEnv(redisUrl: string, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    SKY_KEY_PREFIX: testPrefix(),
    SKY_RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'info',
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
    ...fakeBitbucketEnv(fake),
    ...extra,
  };
}

async function startNode(env: Record<string, string>, port?: number): Promise<NodeProcess> {
  const node = await spawnWebNode(env, port);
  cleanups.push(() => node.stop());
  return node;
}

/** A node on `redisUrl` that must refuse to start: what it said as it exited. */
async function refusedStart(redisUrl: string): Promise<string> {
  const port = await freePort();
  const started = spawnWebNode(nodeEnv(redisUrl, port), port);
  started.then((node) => cleanups.push(() => node.stop())).catch(() => undefined);
  const err = await started.then(
    () => new Error('the node started'),
    (e: unknown) => e as Error,
  );
  return err.message;
}

interface LogLine {
  level: number;
  msg: string;
}
const logLines = (node: NodeProcess): LogLine[] =>
  node
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);

async function readiness(node: NodeProcess): Promise<{ status: string; reasons: string[] }> {
  return (await (await fetch(`${node.url}/readyz`)).json()) as { status: string; reasons: string[] };
}

async function userStatus(node: NodeProcess, login: LoggedIn): Promise<number> {
  const res = await fetch(`${node.url}/api/v1/user`, { headers: login.bearer });
  await res.arrayBuffer();
  return res.status;
}

async function putTeam(node: NodeProcess, owner: LoggedIn, team: string, auth: object): Promise<Response> {
  return fetch(`${node.url}/api/v1/teams/${team}`, {
    method: 'PUT',
    headers: { ...owner.bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth }),
  });
}

const usedMemory = async (redis: PrivateRedis): Promise<number> =>
  Number(/used_memory:(\d+)/.exec(String(await redis.command(['INFO', 'memory'])))?.[1]);

describe('a Redis that may lose sky’s keys stops start-up (SKY_REDIS_CHECKS=strict, the default)', () => {
  test('maxmemory-policy allkeys-lru: refused, naming the policy, the fix and the opt-out', async () => {
    const redis = await privateRedis(['maxmemory-policy', 'allkeys-lru']);
    const said = await refusedStart(redis.url);
    expect(said).toMatch(/^web node exited with 1 before listening/);
    expect(said).toContain('maxmemory-policy allkeys-lru');
    expect(said).toContain('noeviction');
    expect(said).toContain('SKY_REDIS_CHECKS=warn');
  });

  test('persistence off (appendonly no, save ""): refused, naming appendonly', async () => {
    const redis = await privateRedis(['appendonly', 'no'], ['save', '']);
    const said = await refusedStart(redis.url);
    expect(said).toMatch(/^web node exited with 1 before listening/);
    expect(said).toContain('appendonly');
    expect(said).toContain('SKY_REDIS_CHECKS=warn');
    expect(said).not.toContain('maxmemory-policy');
  });
});

/**
 * Writes junk (outside sky's prefix) into a Redis with a small maxmemory under allkeys-lru until each of
 * `keys` has been seen evicted (the node may write one back a moment later); every write is newer than
 * anything sky touched, so sky's keys age into eviction.
 */
async function evictUntilGone(
  redis: PrivateRedis,
  keys: string[],
  limitMs: number,
): Promise<{ writes: number; ms: number }> {
  const value = 'x'.repeat(64 * 1024);
  const started = Date.now();
  const present = new Set(keys);
  let writes = 0;
  for (;;) {
    for (const key of present) if (Number(await redis.command(['EXISTS', key])) === 0) present.delete(key);
    if (present.size === 0) return { writes, ms: Date.now() - started };
    if (Date.now() - started > limitMs) {
      throw new Error(`${[...present].join(', ')} not evicted after ${writes} writes of 64 KB`);
    }
    for (let i = 0; i < 10; i++) await redis.command(['SET', `junk:${writes++}`, value]);
  }
}

test('with SKY_REDIS_CHECKS=warn on allkeys-lru: degraded, and a real eviction lets no revoked token through', async () => {
  const redis = await privateRedis(['maxmemory-policy', 'allkeys-lru']);
  const port = await freePort();
  const env = nodeEnv(redis.url, port, { SKY_REDIS_CHECKS: 'warn' });
  const prefix = env['SKY_KEY_PREFIX'] ?? '';
  const node = await startNode(env, port);

  // The risk is logged at error level and named in /readyz.
  const problem = logLines(node).filter(
    (l) => l.level === 50 && l.msg.includes('maxmemory-policy allkeys-lru'),
  );
  expect(problem.map((l) => l.msg)).toEqual([
    expect.stringContaining('SKY_REDIS_CHECKS=warn: running anyway'),
  ]);
  const ready = await readiness(node);
  expect(ready.status).toBe('degraded');
  expect(ready.reasons.join('; ')).toContain('maxmemory-policy allkeys-lru');

  // Logins, a team, and three logged-out logins.
  const alice = await loginAs(node.url, fake, 'alice');
  expect((await putTeam(node, alice, 'builders', { member: { users: ['bob'] } })).status).toBe(201);
  const bob = await loginAs(node.url, fake, 'bob');
  const revoked: LoggedIn[] = [];
  for (const user of ['alice', 'bob', 'bob']) {
    const login = await loginAs(node.url, fake, user);
    expect((await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: login.bearer })).status).toBe(
      204,
    );
    revoked.push(login);
  }
  const families = `${prefix}revoked:families`;
  const indexKey = `${prefix}{teams}:idx:u:bitbucket-cloud:bob`;
  expect(Number(await redis.command(['ZCARD', families]))).toBe(revoked.length);
  const skyKeysBefore = ((await redis.command(['KEYS', `${prefix}*`])) as string[]).sort();
  expect(skyKeysBefore).toContain(indexKey);

  // Revoked tokens asked all along: before, during and after the eviction and the node's heal.
  const probes: number[] = [];
  let probing = true;
  const probe = (async () => {
    for (let i = 0; probing; i++) {
      probes.push(await userStatus(node, revoked[i % revoked.length] as LoggedIn).catch(() => 0));
      await sleep(10);
    }
  })();
  const stopProbing = async (): Promise<void> => {
    probing = false;
    await probe;
  };
  cleanups.push(stopProbing); // before the node stops, should the test fail

  // A real eviction: a small maxmemory and junk until sky's revocation set is gone.
  const maxmemory = (await usedMemory(redis)) + 2 * 1024 * 1024;
  await redis.command(['CONFIG', 'SET', 'maxmemory', String(maxmemory)]);
  const eviction = await evictUntilGone(redis, [families, indexKey], 20_000);
  const skyKeysLeft = (await redis.command(['KEYS', `${prefix}*`])) as string[];
  const evicted = skyKeysBefore.filter((k) => !skyKeysLeft.includes(k));
  const evictedTotal = Number(/evicted_keys:(\d+)/.exec(String(await redis.command(['INFO', 'stats'])))?.[1]);
  // Room again, so the heal (and the node started next) are not evicted in turn.
  await redis.command(['CONFIG', 'SET', 'maxmemory', '0']);

  const healMs = await msUntil(
    'the node writes the evicted revocations and main back',
    async () =>
      Number(await redis.command(['ZCARD', families])) >= revoked.length &&
      (await redis.command(['HGET', `${prefix}{teams}:configs`, 'main'])) !== null,
    3_000,
  );
  await sleep(300); // a few probes after the heal too
  await stopProbing();
  expect(probes.filter((s) => s !== 401)).toEqual([]);
  expect(
    logLines(node).some((l) => l.level === 50 && /fewer revocations than this node knows/.test(l.msg)),
  ).toBe(true);

  // A node started afterwards (warn mode too) learns them from Redis.
  const late = await startNode(env);
  expect(await Promise.all(revoked.map((login) => userStatus(late, login)))).toEqual(revoked.map(() => 401));
  expect(await Promise.all([alice, bob].map((login) => userStatus(late, login)))).toEqual([200, 200]);
  expect(await Promise.all(revoked.map((login) => userStatus(node, login)))).toEqual(revoked.map(() => 401));

  recordFigures('Redis requirements', {
    'allkeys-lru eviction: junk writes (64 KB) until sky’s revocation set and an index key were evicted':
      eviction.writes,
    'allkeys-lru eviction: time to evict it (ms)': eviction.ms,
    'allkeys-lru eviction: sky keys evicted (left evicted when it stopped) / before': `${evicted.length} / ${skyKeysBefore.length}`,
    'allkeys-lru eviction: keys Redis evicted in all': evictedTotal,
    'allkeys-lru eviction: revocations written back after (ms)': healMs,
    'allkeys-lru eviction: revoked-token probes / 200s': `${probes.length} / 0`,
  });
});

test('CONFIG forbidden (a managed Redis): the node starts and warns what it could not check', async () => {
  const redisPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-redis-noconfig-'));
  const server = spawn(
    redisServerBinary(),
    [
      ...['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir],
      ...['--appendonly', 'yes', '--save', '', '--maxmemory-policy', 'noeviction'],
      ...['--rename-command', 'CONFIG', ''],
    ],
    { stdio: 'ignore' },
  );
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(async () => {
    if (server.exitCode !== null || server.signalCode !== null) return;
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGKILL');
    await exited;
  });
  await waitForPort(redisPort);

  const port = await freePort();
  const node = await startNode(nodeEnv(`redis://127.0.0.1:${redisPort}`, port), port);
  const warnings = logLines(node).filter((l) => l.level === 40 && l.msg.includes('CONFIG GET'));
  expect(warnings.map((l) => l.msg)).toEqual([
    `Redis at 127.0.0.1:${redisPort} does not allow CONFIG GET: sky could not check that it keeps its data on disk (appendonly yes or save) and never evicts keys (maxmemory-policy noeviction); make sure it does`,
  ]);
  expect(logLines(node).filter((l) => l.level >= 50)).toEqual([]);
  expect(await readiness(node)).toEqual({ status: 'ready', reasons: [] });
  const alice = await loginAs(node.url, fake, 'alice');
  expect(await userStatus(node, alice)).toBe(200);
});

test('a full Redis (noeviction at maxmemory) is reported as full, not unreachable, and works once it has room', async () => {
  const redis = await privateRedis();
  const port = await freePort();
  const node = await startNode(nodeEnv(redis.url, port), port);
  const alice = await loginAs(node.url, fake, 'alice');

  // Fill it: junk until Redis refuses a write (OOM); then hold the limit below what it uses, so the
  // memory a connection frees cannot make room again.
  await redis.command(['CONFIG', 'SET', 'maxmemory', String((await usedMemory(redis)) + 1024 * 1024)]);
  const value = 'x'.repeat(16 * 1024);
  let junk = 0;
  for (;;) {
    const refused = await redis.command(['SET', `junk:${junk++}`, value]).then(
      () => null,
      (err: Error) => err.message,
    );
    if (refused !== null) {
      expect(refused).toMatch(/^OOM /);
      break;
    }
    if (junk > 1_000) throw new Error('Redis took 16 MB of junk without refusing a write');
  }
  await redis.command(['CONFIG', 'SET', 'maxmemory', String((await usedMemory(redis)) - 256 * 1024)]);

  // A login's callback: the page says the database is full.
  fake.consentAs('bob');
  const hops = await new Browser().follow(`${node.url}/sky/login`, 3);
  expect(hops.map((h) => h.status)).toEqual([302, 302, 503]);
  const page = hops[2]?.body ?? '';
  expect(/<title>([^<]*)<\/title>/.exec(page)?.[1]).toBe('The CI server’s database is full · sky');
  expect(page).not.toMatch(/cannot reach/i);
  // A team write: the API says so in JSON.
  const put = await putTeam(node, alice, 'builders', { member: { users: ['bob'] } });
  const body = (await put.json()) as { error: string; message: string };
  expect({ status: put.status, error: body.error }).toEqual({ status: 503, error: 'store_full' });
  expect(body.message).toMatch(/full/);
  expect(body.message).not.toMatch(/cannot reach|unavailable/i);

  // Room again: both work.
  await redis.command(['CONFIG', 'SET', 'maxmemory', '0']);
  expect((await putTeam(node, alice, 'builders', { member: { users: ['bob'] } })).status).toBe(201);
  const bob = await loginAs(node.url, fake, 'bob');
  expect(await userStatus(node, bob)).toBe(200);
  recordFigures('Redis requirements', {
    'full Redis: junk writes (16 KB) until OOM': junk,
    'full Redis: login page / team write': `503 "database is full" / 503 store_full`,
  });
});
