import { FakeBitbucket } from '../../lib/testing';
import { recordFigures } from '../harness/figures';
import { freePort } from '../harness/global-setup';
import { loginAs, type LoggedIn } from '../harness/login';
import { testPrefix } from '../harness/node';
import { fakeBitbucketEnv, spawnWebNode, type NodeProcess } from '../harness/process';
import { PrivateRedis } from '../harness/redis-server';
import { msUntil } from '../harness/poll';

/**
 * Nothing comes back from the dead (SPEC §8; issue #15, "Must show" 1): two web nodes on one Redis, under
 * a load of guarded calls, lose everything Redis held, once by FLUSHALL and once by a restart without
 * its data. Every token logged out before is still refused on both nodes and on a node started
 * afterwards; `main` and the revocations are back within one check; the node that finds the loss (the
 * first to check; the others may find Redis whole again) logs it at error level, counts it in /metrics,
 * and its /readyz says degraded until healed.
 */
jest.setTimeout(90_000);

/** How soon after the loss Redis must hold `main` and every revocation again (the check runs every second). */
const HEAL_LIMIT_MS = 3_000;
/** How long /readyz may take to go degraded → ready (a loss holds degraded at least 10 s). */
const READY_LIMIT_MS = 20_000;
/** Load workers (each sends one request at a time, cycling through every node and token). */
const WORKERS = 4;

let fake: FakeBitbucket;
/** What each test started, undone after it (and after all, should a test fail half way). */
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
async function cleanUp(): Promise<void> {
  while (cleanups.length > 0)
    await cleanups
      .pop()?.()
      .catch(() => undefined);
}
afterEach(cleanUp);
afterAll(async () => {
  await cleanUp();
  await fake?.stop();
});

/** A token a client holds, and whose it is. */
interface Held {
  label: string;
  bearer: { authorization: string };
}

/** Two interchangeable nodes on a Redis of the test's own, with live and logged-out tokens. */
interface Pair {
  redis: PrivateRedis;
  prefix: string;
  env: Record<string, string>;
  nodes: NodeProcess[];
  live: Held[];
  revoked: Held[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function startNode(env: Record<string, string>, port?: number): Promise<NodeProcess> {
  const node = await spawnWebNode(env, port);
  cleanups.push(() => node.stop());
  return node;
}

const held = (label: string, login: LoggedIn): Held => ({ label, bearer: login.bearer });

async function status(url: string, token: Held): Promise<number> {
  const res = await fetch(`${url}/api/v1/user`, { headers: token.bearer });
  await res.arrayBuffer();
  return res.status;
}

/**
 * Two nodes (same signing key, Redis and prefix; one public URL, as behind a load balancer), alice
 * owner of main, bob a member of `builders`; five logins, three of them logged out (on either node).
 */
async function setUpPair(): Promise<Pair> {
  const redis = await PrivateRedis.start();
  cleanups.push(() => redis.stop());
  const prefix = testPrefix();
  const port = await freePort();
  const env = {
    REDIS_URL: redis.url,
    SKY_KEY_PREFIX: prefix,
    SKY_RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'info',
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
    ...fakeBitbucketEnv(fake),
  };
  const nodes = await Promise.all([startNode(env, port), startNode(env)]);
  const [a, b] = nodes as [NodeProcess, NodeProcess];

  const alice = await loginAs(a.url, fake, 'alice');
  const put = await fetch(`${a.url}/api/v1/teams/builders`, {
    method: 'PUT',
    headers: { ...alice.bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { member: { users: ['bob'] } } }),
  });
  expect(put.status).toBe(201);
  const bob = await loginAs(b.url, fake, 'bob');
  const live = [held('alice', alice), held('bob', bob)];
  const revoked: Held[] = [];
  for (const [label, user, where] of [
    ['alice (logged out on b)', 'alice', b],
    ['bob (logged out on a)', 'bob', a],
    ['bob (logged out on b)', 'bob', b],
  ] as const) {
    const login = await loginAs(a.url, fake, user);
    const out = await fetch(`${where.url}/sky/logout`, { method: 'POST', headers: login.bearer });
    expect(out.status).toBe(204);
    revoked.push(held(label, login));
  }
  // Before the fault: the logouts reached both nodes (pub/sub) and Redis; live tokens pass.
  for (const node of nodes) {
    for (const token of revoked) {
      await msUntil(
        `${token.label} refused on ${node.url}`,
        async () => (await status(node.url, token)) === 401,
        1_000,
      );
    }
    for (const token of live) expect(await status(node.url, token)).toBe(200);
  }
  expect(await familiesInRedis({ redis, prefix })).toBe(revoked.length);
  return { redis, prefix, env, nodes, live, revoked };
}

const familiesInRedis = async ({ redis, prefix }: Pick<Pair, 'redis' | 'prefix'>): Promise<number> =>
  Number(await redis.command(['ZCARD', `${prefix}revoked:families`]));

/** Redis holds `main` and every family logged out before (false while it cannot be reached). */
async function healed(pair: Pair): Promise<boolean> {
  try {
    const main = await pair.redis.command(['HGET', `${pair.prefix}{teams}:configs`, 'main']);
    return main !== null && (await familiesInRedis(pair)) >= pair.revoked.length;
  } catch {
    return false;
  }
}

interface Answer {
  node: string;
  token: Held;
  kind: 'live' | 'revoked';
  at: number;
  status: number;
}

/** A bounded load of guarded GETs with every token on every node; stop() gives every answer. */
function startLoad(pair: Pair): { stop(): Promise<Answer[]> } {
  const targets = pair.nodes.flatMap((node) => [
    ...pair.live.map((token) => ({ node: node.url, token, kind: 'live' as const })),
    ...pair.revoked.map((token) => ({ node: node.url, token, kind: 'revoked' as const })),
  ]);
  const answers: Answer[] = [];
  const hardStop = Date.now() + 60_000;
  let stopping = false;
  const worker = async (offset: number): Promise<void> => {
    for (let i = offset; !stopping && Date.now() < hardStop; i++) {
      const target = targets[i % targets.length] as (typeof targets)[number];
      const at = Date.now();
      const answered = await status(target.node, target.token).catch(() => 0);
      answers.push({ ...target, at, status: answered });
    }
  };
  const running = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  const stop = async (): Promise<Answer[]> => {
    stopping = true;
    await running;
    return answers;
  };
  cleanups.push(stop); // before the nodes stop, should the test fail
  return { stop };
}

interface Readiness {
  /** When it first said degraded, ms after the heal, and why; null: never. */
  degradedMs: number | null;
  reasons: string[];
  /** When it said ready after that; null: not within the limit. */
  readyMs: number | null;
}

/**
 * /readyz of every node from now on, until each one that said degraded says ready again (and at least
 * one did, and every node had a few checks' time to notice).
 */
async function readinessAfterLoss(nodes: NodeProcess[]): Promise<Readiness[]> {
  const started = Date.now();
  const seen: Readiness[] = nodes.map(() => ({ degradedMs: null, reasons: [], readyMs: null }));
  const done = (): boolean =>
    Date.now() - started > 3_000 &&
    seen.some((r) => r.degradedMs !== null) &&
    seen.every((r) => r.degradedMs === null || r.readyMs !== null);
  while (!done() && Date.now() - started < READY_LIMIT_MS) {
    await Promise.all(
      nodes.map(async (node, i) => {
        const res = await fetch(`${node.url}/readyz`).catch(() => null);
        const body = res ? ((await res.json()) as { status: string; reasons: string[] }) : null;
        const r = seen[i] as Readiness;
        if (body?.status === 'degraded' && r.degradedMs === null) {
          r.degradedMs = Date.now() - started;
          r.reasons = body.reasons;
        }
        if (body?.status === 'ready' && r.degradedMs !== null) r.readyMs ??= Date.now() - started;
      }),
    );
    await sleep(100);
  }
  return seen;
}

/** The error-level lines (pino level 50) a node logged about lost data. */
const lossErrors = (node: NodeProcess): string[] =>
  node
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string })
    .filter(
      (line) =>
        line.level === 50 &&
        /team store was emptied|fewer revocations than this node knows|another node found Redis missing/.test(
          line.msg,
        ),
    )
    .map((line) => line.msg);

async function dataLossCount(node: NodeProcess, kind: 'teams' | 'revocations'): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return Number(new RegExp(`sky_store_data_loss_total\\{kind="${kind}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
}

/** Runs the load around `fault`, then checks every promise of SPEC §8 on both nodes and on a third. */
async function survives(
  pair: Pair,
  fault: () => Promise<void>,
): Promise<{
  healMs: number;
  readyMs: number;
  revokedDuringLoss: number;
  requests: number;
  revokedGrants: number;
  noticedBy: string;
}> {
  const load = startLoad(pair);
  await sleep(500);
  const faultAt = Date.now();
  await fault();
  const healMs = await msUntil('main and the revocations back in Redis', () => healed(pair), HEAL_LIMIT_MS);
  const healedAt = Date.now();
  const readiness = await readinessAfterLoss(pair.nodes);
  const answers = await load.stop();

  // The key promise: a revoked token never answers 200, before, during or after the loss, on either node.
  const revoked = answers.filter((a) => a.kind === 'revoked');
  const revokedGrants = revoked.filter((a) => a.status === 200);
  expect(revokedGrants).toEqual([]);
  expect(revoked.filter((a) => a.status !== 401).map((a) => ({ ...a, token: a.token.label }))).toEqual([]);
  for (const node of pair.nodes)
    expect(revoked.filter((a) => a.node === node.url && a.at > faultAt).length).toBeGreaterThan(0);
  // Live tokens keep working (verification is local; a loss is not an outage).
  const live = answers.filter((a) => a.kind === 'live');
  expect(live.filter((a) => a.status !== 200).map((a) => ({ ...a, token: a.token.label }))).toEqual([]);

  // Every node said so at error level (the one that found the loss, and the others when it announced
  // its heal), counted it, and was degraded until healed.
  const seen = await Promise.all(
    pair.nodes.map(async (node, i) => ({
      node: node.url,
      loggedAtErrorLevel: lossErrors(node).length > 0,
      degraded: readiness[i]?.degradedMs !== null && /lost/.test(readiness[i]?.reasons.join('; ') ?? ''),
      readyAgain: readiness[i]?.readyMs !== null,
      revocationLossCounted: (await dataLossCount(node, 'revocations')) >= 1,
    })),
  );
  const noticed = seen.filter((s) => s.loggedAtErrorLevel);
  for (const node of seen) {
    expect({ ...node, errors: lossErrors(pair.nodes[seen.indexOf(node)] as NodeProcess) }).toMatchObject({
      loggedAtErrorLevel: true,
      degraded: true,
      readyAgain: true,
      revocationLossCounted: true,
    });
  }

  // A node started after the heal learns every revocation from Redis.
  const late = await startNode(pair.env);
  const onLate = async (tokens: Held[]): Promise<[string, number][]> =>
    Promise.all(tokens.map(async (t): Promise<[string, number]> => [t.label, await status(late.url, t)]));
  expect(await onLate(pair.revoked)).toEqual(pair.revoked.map((t) => [t.label, 401]));
  expect(await onLate(pair.live)).toEqual(pair.live.map((t) => [t.label, 200]));

  return {
    healMs,
    // From the fault: the heal, then the degraded hold of the slowest node.
    readyMs: healMs + Math.max(...readiness.map((r) => r.readyMs ?? 0)),
    revokedDuringLoss: revoked.filter((a) => a.at >= faultAt && a.at <= healedAt).length,
    requests: answers.length,
    revokedGrants: revokedGrants.length,
    noticedBy: `${noticed.length} of ${seen.length}`,
  };
}

test('FLUSHALL under load: no revoked token passes on any node; main and the revocations are written back', async () => {
  const pair = await setUpPair();
  const result = await survives(pair, async () => {
    expect(await pair.redis.command(['FLUSHALL'])).toBe('OK');
  });
  recordFigures('data loss', {
    'FLUSHALL: main and revocations back in Redis (ms)': result.healMs,
    'FLUSHALL: /readyz ready again after (ms)': result.readyMs,
    'FLUSHALL: revoked-token requests before the heal': result.revokedDuringLoss,
    'FLUSHALL: guarded requests sent': result.requests,
    'FLUSHALL: revoked-token 200s': result.revokedGrants,
    'FLUSHALL: nodes that logged the loss': result.noticedBy,
  });
});

test('Redis restarted without its data under load: the nodes reconnect, heal, and refuse every revoked token', async () => {
  const pair = await setUpPair();
  const result = await survives(pair, async () => {
    await pair.redis.wipe();
    await pair.redis.up();
  });
  recordFigures('data loss', {
    'restart without data: main and revocations back in Redis (ms)': result.healMs,
    'restart without data: /readyz ready again after (ms)': result.readyMs,
    'restart without data: revoked-token requests before the heal': result.revokedDuringLoss,
    'restart without data: guarded requests sent': result.requests,
    'restart without data: revoked-token 200s': result.revokedGrants,
    'restart without data: nodes that logged the loss': result.noticedBy,
  });
});

test('a loss another node reported while this node was not subscribed is found by its next check, not by a node started later', async () => {
  const redis = await PrivateRedis.start();
  cleanups.push(() => redis.stop());
  const prefix = testPrefix();
  const env = { REDIS_URL: redis.url, SKY_KEY_PREFIX: prefix, LOG_LEVEL: 'info', ...fakeBitbucketEnv(fake) };
  const earlier = await startNode(env);
  const readyz = async (node: NodeProcess): Promise<{ status: string; reasons: string[] }> =>
    (await (await fetch(`${node.url}/readyz`)).json()) as { status: string; reasons: string[] };
  expect((await readyz(earlier)).status).toBe('ready');

  // What another node's reportLoss leaves in Redis when its event was published while this node's
  // subscription was reconnecting: the mark, and no event this node heard.
  await redis.command(['HSET', `${prefix}losses`, 'revocations', `${new Date().toISOString()} elsewhere`]);
  await msUntil('the earlier node reports the loss', async () => lossErrors(earlier).length > 0, 3_000);
  expect(lossErrors(earlier)).toEqual([
    expect.stringMatching(/^another node found Redis missing revocations and wrote back what it knew/),
  ]);
  expect(await dataLossCount(earlier, 'revocations')).toBe(1);
  expect(await readyz(earlier)).toEqual({
    status: 'degraded',
    reasons: [expect.stringMatching(/lost revocations/)],
  });

  // A node started afterwards finds the mark at start: that loss was before its time.
  const later = await startNode(env);
  await sleep(2_500);
  expect(lossErrors(later)).toEqual([]);
  expect(await dataLossCount(later, 'revocations')).toBe(0);
  expect(await readyz(later)).toEqual({ status: 'ready', reasons: [] });
  // Reported once: the mark is the same at every later check.
  expect(lossErrors(earlier)).toHaveLength(1);
  expect(await dataLossCount(earlier, 'revocations')).toBe(1);
});
