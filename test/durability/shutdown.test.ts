import { request as httpRequest, type ClientRequest } from 'node:http';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { recordFigures } from '../harness/figures';
import { freePort } from '../harness/global-setup';
import { cliLoginAs, loginAs, tokenRequest, type LoggedIn } from '../harness/login';
import { testPrefix, testRedisEnv } from '../harness/node';
import { fakeBitbucketEnv, spawnWebNode, type NodeExit, type NodeProcess } from '../harness/process';

/**
 * Graceful shutdown (issue #15 "SIGTERM under load → every in-flight request completes (0 cut), exit 0
 * within the grace"; SPEC §12): a web node process that gets SIGTERM (or SIGINT) while browser logins,
 * refreshes and guarded calls are in flight (held by a slow Bitbucket, or by a body still uploading)
 * stops accepting, answers every one of them in full, logs one "web node stopped" line and exits 0; the
 * answers it gave are real (a fresh node honours their tokens). SKY_SHUTDOWN_GRACE bounds the wait: a
 * request held past it is cut, and the node still exits 0 on time.
 */
jest.setTimeout(60_000);

/** Bitbucket's latency while the signal comes: a login's code exchange and every API call wait this long. */
const TOKEN_LATENCY_MS = 600;
const API_LATENCY_MS = 400;
/** Time the exit may take beyond the grace: tsx relays the signal (30 ms), Redis is closed, node exits. */
const EXIT_MARGIN_MS = 2_000;
/** Users whose CLI logins are refreshed in flight (none of them logs in through the browser meanwhile). */
const REFRESHERS = ['bob', 'carol', 'dave'];

let fake: FakeBitbucket;
/** Every node this file started, so afterAll ends them even when a test fails half-way. */
const nodes: NodeProcess[] = [];
const keyDirs: string[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
afterAll(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  await fake?.stop();
  for (const dir of keyDirs) rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  fake.clearFaults();
  fake.resetRequests();
});

/** The environment of one deployment: its own key prefix and signing key, so a second node can take over. */
function deployment(shutdownGrace: string): (port: number) => Record<string, string> {
  const bitbucket = fakeBitbucketEnv(fake);
  keyDirs.push(path.dirname(bitbucket['CONCOURSE_SESSION_SIGNING_KEY'] ?? ''));
  const prefix = testPrefix();
  return (port) => ({
    ...testRedisEnv(),
    ...bitbucket,
    SKY_KEY_PREFIX: prefix,
    SKY_SHUTDOWN_GRACE: shutdownGrace,
    SKY_RATE_LIMIT_PER_MINUTE: '0',
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
  });
}

/** A node of a deployment; `port` reuses a stopped node's, so its public URL (the token issuer) stays. */
async function startNode(env: (port: number) => Record<string, string>, port?: number): Promise<NodeProcess> {
  port ??= await freePort();
  const node = await spawnWebNode(env(port), port);
  nodes.push(node);
  return node;
}

/** How one request ended: a status (with what the client keeps from it), or the client-side error. */
interface Outcome {
  kind: 'login' | 'refresh' | 'guarded GET' | 'guarded PUT (uploading)';
  status?: number;
  error?: string;
  /** The session token of a login, or the new refresh token of a refresh. */
  kept?: string;
  doneAt: number;
}

/** The error a client sees, by its code when it has one (ECONNRESET, ECONNREFUSED, UND_ERR_SOCKET). */
function clientError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const own = err as { code?: string; message?: string };
  return cause?.code ?? own.code ?? cause?.message ?? own.message ?? String(err);
}

async function settle(
  kind: Outcome['kind'],
  run: () => Promise<{ status: number; kept?: string }>,
): Promise<Outcome> {
  try {
    return { kind, ...(await run()), doneAt: Date.now() };
  } catch (err) {
    return { kind, error: clientError(err), doneAt: Date.now() };
  }
}

/** A browser login through the real flow; its status is the callback's (302 to the landing page). */
const browserLogin = (node: NodeProcess): Promise<Outcome> =>
  settle('login', async () => {
    const browser = new Browser();
    const hops = await browser.follow(`${node.url}/sky/login`, 3);
    const kept = decodeURIComponent(browser.jar.get('skymarshal_auth') ?? '').slice('bearer '.length);
    return { status: hops.length === 3 ? (hops[2]?.status ?? 0) : -hops.length, kept };
  });

const refresh = (node: NodeProcess, refreshToken: string): Promise<Outcome> =>
  settle('refresh', async () => {
    const answer = await tokenRequest(node.url, { grant_type: 'refresh_token', refresh_token: refreshToken });
    return { status: answer.status, kept: String(answer.body['refresh_token'] ?? '') };
  });

const guardedGet = (node: NodeProcess, token: string): Promise<Outcome> =>
  settle('guarded GET', async () => {
    const res = await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${token}` } });
    await res.text();
    return { status: res.status };
  });

/**
 * A guarded team write whose body is still uploading: the node has its headers (the request is in
 * flight) and waits for the rest, which `finish()` sends. Its own connection (no pooling).
 */
function uploadingPut(
  node: NodeProcess,
  token: string,
  team: string,
): { sent: Promise<void>; finish(): void; outcome: Promise<Outcome> } {
  const body = JSON.stringify({ auth: { owner: { users: ['alice'] } } });
  const half = Math.floor(body.length / 2);
  let req: ClientRequest | undefined;
  let sent!: () => void;
  const headersSent = new Promise<void>((resolve) => (sent = resolve));
  const outcome = settle(
    'guarded PUT (uploading)',
    () =>
      new Promise((resolve, reject) => {
        req = httpRequest(`${node.url}/api/v1/teams/${team}`, {
          method: 'PUT',
          agent: false,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
          },
        });
        req.on('error', reject);
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
          res.on('error', reject);
        });
        req.flushHeaders();
        req.write(body.slice(0, half), () => sent());
      }),
  );
  return { sent: headersSent, finish: () => req?.end(body.slice(half)), outcome };
}

/** A request on a new connection (no pooled keep-alive one): a status, or how the connection failed. */
function freshRequest(node: NodeProcess): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest(`${node.url}/healthz`, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
    });
    req.on('error', (err) => resolve(clientError(err)));
    req.end();
  });
}

async function until(what: string, check: () => boolean, limitMs = 5_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The one "web node stopped" line the node logged, parsed (the test fails when there is not exactly one). */
function stoppedLine(node: NodeProcess): { finished: number; cut: number; ms: number } {
  const lines = node
    .output()
    .split('\n')
    .filter((line) => line.includes('"web node stopped"'));
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0] ?? '{}') as { finished: number; cut: number; ms: number };
}

const statusesOf = (outcomes: Outcome[]) => outcomes.map((o) => `${o.kind}: ${o.error ?? o.status}`).sort();

/** alice (owner of main) logged in, with the refreshers members of a team so that they can log in. */
async function crew(node: NodeProcess): Promise<LoggedIn> {
  const alice = await loginAs(node.url, fake, 'alice');
  const res = await fetch(`${node.url}/api/v1/teams/crew`, {
    method: 'PUT',
    headers: { ...alice.bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { member: { users: REFRESHERS } } }),
  });
  expect(res.status).toBe(201);
  return alice;
}

/** The refresh tokens of one CLI login per entry of `users`, taken before Bitbucket slows down. */
async function refreshTokens(node: NodeProcess, users: string[]): Promise<string[]> {
  const tokens: string[] = [];
  for (const user of users) tokens.push((await cliLoginAs(node.url, fake, user)).refreshToken);
  return tokens;
}

/** API calls Bitbucket has seen for these users since the last resetRequests(). */
const apiCallsOf = (users: string[]): number => users.reduce((n, user) => n + fake.callsOf(user), 0);

test('SIGTERM under load: every in-flight request is answered in full, exit 0 within the grace', async () => {
  const env = deployment('10s');
  const node = await startNode(env);
  const alice = await crew(node);
  const held = { logins: 6, refreshes: 6, uploads: 2, guarded: 4 };
  const tokens = await refreshTokens(node, [...REFRESHERS, ...REFRESHERS]);
  fake.consentAs('alice');
  fake.resetRequests();
  fake.addFault({ match: 'token', latencyMs: TOKEN_LATENCY_MS });
  fake.addFault({ match: 'api', latencyMs: API_LATENCY_MS });

  const startedAt = Date.now();
  const logins = Array.from({ length: held.logins }, () => browserLogin(node));
  const refreshes = tokens.map((token) => refresh(node, token));
  const uploads = Array.from({ length: held.uploads }, (_, i) =>
    uploadingPut(node, alice.token, `t-up-${i}`),
  );
  // In flight at the node: every callback waits on the code exchange, every refresh on an API call,
  // every upload on its body.
  await until('the logins and refreshes reach Bitbucket', () => {
    return fake.count('/site/oauth2/access_token') >= held.logins && apiCallsOf(REFRESHERS) >= held.refreshes;
  });
  await Promise.all(uploads.map((u) => u.sent));
  const gets = Array.from({ length: held.guarded }, () => guardedGet(node, alice.token));
  const signalledAt = Date.now();
  expect(signalledAt - startedAt).toBeLessThan(TOKEN_LATENCY_MS); // nothing held can have finished yet
  node.kill('SIGTERM');

  // The node stops accepting at once: a request begun afterwards on a new connection.
  await sleep(150);
  const afterSignal = await freshRequest(node);
  for (const upload of uploads) upload.finish();

  const exit: NodeExit = await node.exited;
  const outcomes = await Promise.all([...logins, ...refreshes, ...gets, ...uploads.map((u) => u.outcome)]);
  const context = `${statusesOf(outcomes).join('\n')}\n${node.output()}`;
  const expected = (kind: Outcome['kind']) =>
    ({ login: 302, refresh: 200, 'guarded GET': 200, 'guarded PUT (uploading)': 201 })[kind];
  expect({ cut: outcomes.filter((o) => o.status !== expected(o.kind)), context }).toEqual({
    cut: [],
    context,
  });
  expect(exit).toEqual({ code: 0, signal: null, ms: expect.any(Number) });
  expect(exit.ms).toBeLessThan(10_000 + EXIT_MARGIN_MS);
  const stopped = stoppedLine(node);
  expect(stopped.cut).toBe(0);
  // The node's own count of what was in flight when the signal came: at least everything held.
  expect(stopped.finished).toBeGreaterThanOrEqual(held.logins + held.refreshes + held.uploads);
  expect(['ECONNREFUSED', '200']).toContain(afterSignal);
  const lastAnswer = Math.max(...outcomes.map((o) => o.doneAt)) - signalledAt;

  // The answers were real: the node's successor (same deployment, same URL) honours every token handed out.
  fake.clearFaults();
  const successor = await startNode(env, Number(new URL(node.url).port));
  const loginStatuses = await Promise.all(
    outcomes
      .filter((o) => o.kind === 'login')
      .map(async (o) => (await guardedGet(successor, o.kept ?? '')).status),
  );
  expect(loginStatuses).toEqual(Array(held.logins).fill(200));
  const redeemed = await Promise.all(
    outcomes
      .filter((o) => o.kind === 'refresh')
      .map(async (o) => (await refresh(successor, o.kept ?? '')).status),
  );
  expect(redeemed).toEqual(Array(held.refreshes).fill(200));
  for (let i = 0; i < held.uploads; i++) {
    const team = await fetch(`${successor.url}/api/v1/teams/t-up-${i}`, { headers: alice.bearer });
    expect(team.status).toBe(200);
  }

  recordFigures('graceful shutdown', {
    'SIGTERM: requests in flight (logins / refreshes / uploading writes / guarded GETs)': `${held.logins} / ${held.refreshes} / ${held.uploads} / ${held.guarded}`,
    'SIGTERM: in flight by the node’s count (finished / cut)': `${stopped.finished} / ${stopped.cut}`,
    'SIGTERM: requests answered in full / cut': `${outcomes.length} / 0`,
    'SIGTERM: last answer after the signal (ms)': lastAnswer,
    'SIGTERM: exit code / after the signal (ms) / grace (ms)': `${exit.code} / ${exit.ms} / 10000`,
    'SIGTERM: a request begun 150 ms after the signal':
      afterSignal === 'ECONNREFUSED' ? 'refused (ECONNREFUSED)' : `answered ${afterSignal}`,
  });
});

test('SIGINT shuts down as gracefully: in-flight requests answered, exit 0', async () => {
  const node = await startNode(deployment('10s'));
  await crew(node);
  const tokens = await refreshTokens(node, REFRESHERS.slice(0, 2));
  fake.consentAs('alice');
  fake.resetRequests();
  fake.addFault({ match: 'token', latencyMs: TOKEN_LATENCY_MS });
  fake.addFault({ match: 'api', latencyMs: API_LATENCY_MS });

  const inFlight = [browserLogin(node), browserLogin(node), ...tokens.map((t) => refresh(node, t))];
  await until('the logins and refreshes reach Bitbucket', () => {
    return fake.count('/site/oauth2/access_token') >= 2 && apiCallsOf(REFRESHERS) >= 2;
  });
  node.kill('SIGINT');
  // While it drains, /readyz says so (a balancer sends new work elsewhere); then nothing answers.
  const readiness: string[] = [];
  for (
    const started = Date.now();
    Date.now() - started < 2_000 && !readiness.some((r) => r.startsWith('503'));
  ) {
    const res = await fetch(`${node.url}/readyz`).catch(() => null);
    if (res)
      readiness.push(`${res.status} ${res.status === 503 ? JSON.stringify(await res.json()) : ''}`.trim());
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(readiness).toContain(
    '503 {"status":"unavailable","reasons":["shutting down: this node finishes its requests and stops"]}',
  );
  const exit = await node.exited;
  const outcomes = await Promise.all(inFlight);
  expect(statusesOf(outcomes)).toEqual(['login: 302', 'login: 302', 'refresh: 200', 'refresh: 200']);
  expect(exit).toEqual({ code: 0, signal: null, ms: expect.any(Number) });
  expect(exit.ms).toBeLessThan(10_000 + EXIT_MARGIN_MS);
  const stopped = stoppedLine(node);
  expect(stopped).toMatchObject({ cut: 0, finished: 4 });
  recordFigures('graceful shutdown', {
    'SIGINT: in flight (finished / cut) / exit code / after the signal (ms)': `${stopped.finished} / ${stopped.cut} / ${exit.code} / ${exit.ms}`,
  });
});

test('the grace bounds the wait: a request held past SKY_SHUTDOWN_GRACE=1s is cut, exit 0 on time', async () => {
  const graceMs = 1_000;
  const node = await startNode(deployment('1s'));
  await crew(node);
  const [token = ''] = await refreshTokens(node, ['bob']);
  fake.resetRequests();
  fake.addFault({ match: 'api', latencyMs: 5_000 });

  const held = refresh(node, token);
  await until('the refresh reaches Bitbucket', () => fake.callsOf('bob') >= 1);
  node.kill('SIGTERM');
  const exit = await node.exited;
  const outcome = await held;
  // The client of the cut request sees its connection end without an answer.
  expect(outcome.status).toBeUndefined();
  expect(outcome.error).toEqual(expect.any(String));
  expect(exit).toEqual({ code: 0, signal: null, ms: expect.any(Number) });
  expect(exit.ms).toBeGreaterThanOrEqual(graceMs);
  expect(exit.ms).toBeLessThan(graceMs + EXIT_MARGIN_MS);
  const stopped = stoppedLine(node);
  expect(stopped).toMatchObject({ cut: 1, finished: 0 });
  recordFigures('graceful shutdown', {
    'grace 1 s, a request held 5 s: cut / exit code / after the signal (ms) / the client saw': `${stopped.cut} / ${exit.code} / ${exit.ms} / ${outcome.error}`,
  });
});
