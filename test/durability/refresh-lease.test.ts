import { rmSync } from 'node:fs';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { recordFigures } from '../harness/figures';
import { freePort } from '../harness/global-setup';
import { cliLoginAs, loginAs, tokenRequest, type LoggedIn } from '../harness/login';
import { testPrefix, testRedisEnv } from '../harness/node';
import { fakeBitbucketEnv, spawnWebNode, type NodeProcess } from '../harness/process';

/**
 * Issue #15, "crash-safe refresh" (SPEC §8): a web node killed (kill -9) or stopped (SIGTERM) while it
 * holds a user's upstream refresh lease leaves nothing stuck. The client that retries on the other node
 * is answered within the upstream call's timeout (200 with new tokens, or 400 invalid_grant "log in
 * again" when the provider rotated its token in an answer nobody saw), and the user's other logins
 * keep working: nobody's session is revoked.
 */
jest.setTimeout(60_000);

/** The Bitbucket call timeout: no environment setting exists, so the web node runs with the default. */
const UPSTREAM_TIMEOUT_MS = 10_000;
/** What "within the upstream timeout" allows on top for the client's own round trips. */
const ANSWER_MARGIN_MS = 2_000;
/** The holder's SKY_SHUTDOWN_GRACE: shorter than Bitbucket's answer, so SIGTERM cuts the refresh. */
const SHUTDOWN_GRACE_MS = 1_000;
const TOKEN_PATH = '/site/oauth2/access_token';

let fake: FakeBitbucket;
/** The node that survives every scenario; its URL is the public one (the callback of every login). */
let survivor: NodeProcess;
/** The node of the current scenario, which holds the lease and goes down. */
let holder: NodeProcess | undefined;
let env: Record<string, string>;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  const port = await freePort();
  env = {
    ...testRedisEnv(),
    ...fakeBitbucketEnv(fake),
    // Each scenario's user owns main too: a team without a set-team round trip.
    CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice,bob,carol,dave',
    SKY_KEY_PREFIX: testPrefix(),
    SKY_RATE_LIMIT_PER_MINUTE: '0',
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
  };
  survivor = await spawnWebNode(env, port);
});
afterEach(async () => {
  await holder?.stop();
  holder = undefined;
  fake.clearFaults();
});
afterAll(async () => {
  await holder?.stop();
  await survivor?.stop();
  await fake?.stop();
  // The signing key's folder (fakeBitbucketEnv made it).
  const key = env?.['CONCOURSE_SESSION_SIGNING_KEY'];
  if (key) rmSync(path.dirname(key), { recursive: true, force: true });
});

const claimsOf = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
const bearer = (token: string): { authorization: string } => ({ authorization: `Bearer ${token}` });
const userStatus = async (node: NodeProcess, auth: { authorization: string }): Promise<number> =>
  (await fetch(`${node.url}/api/v1/user`, { headers: auth })).status;

async function until(what: string, check: () => boolean, limitMs: number): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A user's logins: two CLI logins (families A and B, each with a refresh token) and a browser session. */
interface Logins {
  a: { token: string; refreshToken: string };
  b: { token: string; refreshToken: string };
  session: LoggedIn;
}

async function logIn(user: string): Promise<Logins> {
  const a = await cliLoginAs(survivor.url, fake, user);
  const b = await cliLoginAs(survivor.url, fake, user);
  const session = await loginAs(survivor.url, fake, user);
  return { a, b, session };
}

const refreshOn = (node: NodeProcess, refreshToken: string): ReturnType<typeof tokenRequest> =>
  tokenRequest(node.url, { grant_type: 'refresh_token', refresh_token: refreshToken });

interface Scenario {
  name: string;
  /** A user of its own, so a scenario that fails leaves the next one's user untouched. */
  user: string;
  signal: 'SIGKILL' | 'SIGTERM';
  /** How long the fake Bitbucket sits on the holder's refresh before it rotates and answers. */
  upstreamLatencyMs: number;
  /** The survivor's answer to the client: the provider had not yet spent its token, or it had. */
  expected: 200 | 400;
}

const scenarios: Scenario[] = [
  // The lease of a dead holder frees within 3 s; the fake has not yet spent the token: the survivor
  // refreshes with it.
  {
    name: 'kill -9, upstream still working',
    user: 'bob',
    signal: 'SIGKILL',
    upstreamLatencyMs: 5_000,
    expected: 200,
  },
  // The fake rotated its token in an answer that reached nobody: only this client logs in again.
  {
    name: 'kill -9, upstream answer lost',
    user: 'carol',
    signal: 'SIGKILL',
    upstreamLatencyMs: 1_000,
    expected: 400,
  },
  // The grace cuts the refresh; the lease is given up at once.
  {
    name: 'SIGTERM past the grace',
    user: 'dave',
    signal: 'SIGTERM',
    upstreamLatencyMs: 5_000,
    expected: 200,
  },
];

test.each(scenarios)('$name: the other node answers in time, other logins live', async (scenario) => {
  holder = await spawnWebNode({ ...env, SKY_SHUTDOWN_GRACE: `${SHUTDOWN_GRACE_MS / 1000}s` });
  const holderNode = holder;
  const survivorMark = survivor.output().length;
  const user = await logIn(scenario.user);
  for (const auth of [bearer(user.a.token), bearer(user.b.token), user.session.bearer])
    expect(await userStatus(survivor, auth)).toBe(200);

  // The user's upstream access token has expired: redeeming a refresh token must refresh it first.
  fake.expireAccessTokens();
  fake.addFault({ match: 'token', latencyMs: scenario.upstreamLatencyMs, times: 1 });
  const tokenCallsBefore = fake.count(TOKEN_PATH);
  const onHolder = refreshOn(holderNode, user.a.refreshToken).then(
    (answer) => ({ answer }),
    (err: unknown) => ({ failed: String(err) }),
  );
  // The holder has the lease and its refresh is at Bitbucket.
  await until('the holder calls the token endpoint', () => fake.count(TOKEN_PATH) > tokenCallsBefore, 5_000);

  const downAt = Date.now();
  if (scenario.signal === 'SIGKILL') holderNode.kill('SIGKILL');
  // SIGTERM (stop() sends it): the grace runs out before Bitbucket answers and the request is cut.
  const holderExitMs = holderNode.stop().then(() => Date.now() - downAt);
  const first = await onHolder;
  expect(first).toEqual({ failed: expect.stringMatching(/fetch failed|terminated|socket/i) });
  const clientFailedMs = Date.now() - downAt;

  // The client retries on the other node.
  const retriedAt = Date.now();
  const retry = await refreshOn(survivor, user.a.refreshToken);
  const answerMs = Date.now() - retriedAt;
  const exitMs = await holderExitMs;
  const context = { scenario, retry, answerMs, survivor: survivor.output().slice(survivorMark) };
  expect({ ...context, status: retry.status }).toEqual({ ...context, status: scenario.expected });
  expect(answerMs).toBeLessThan(UPSTREAM_TIMEOUT_MS + ANSWER_MARGIN_MS);
  if (scenario.expected === 200) {
    expect(await userStatus(survivor, bearer(String(retry.body['access_token'])))).toBe(200);
  } else {
    expect(retry.body['error']).toBe('invalid_grant');
    expect(String(retry.body['error_description'])).toMatch(/lost in an interrupted refresh: log in again/);
    await until(
      'the survivor logs that the answer was lost',
      () => survivor.output().slice(survivorMark).includes('an upstream refresh answer was lost earlier'),
      1_000,
    );
  }
  // kill -9 ends it at once; SIGTERM lets the refresh run for the grace, then cuts it and exits.
  expect(exitMs).toBeLessThan(scenario.signal === 'SIGKILL' ? 1_000 : SHUTDOWN_GRACE_MS + 1_000);
  if (scenario.signal === 'SIGTERM') {
    expect(clientFailedMs).toBeGreaterThanOrEqual(SHUTDOWN_GRACE_MS - 50);
    const stoppedLine = holderNode
      .output()
      .split('\n')
      .find((line) => line.includes('"web node stopped"'));
    expect(stoppedLine).toBeDefined();
    expect(JSON.parse(stoppedLine ?? '{}')).toMatchObject({ level: 30, finished: 0, cut: 1 });
  }

  // The user's other logins: family B and the browser session are not revoked.
  expect(await userStatus(survivor, bearer(user.b.token))).toBe(200);
  expect(await userStatus(survivor, user.session.bearer)).toBe(200);
  expect((await user.session.browser.request(`${survivor.url}/api/v1/user`)).status).toBe(200);
  const familyB = await refreshOn(survivor, user.b.refreshToken);
  if (scenario.expected === 200) {
    expect({ familyB, status: familyB.status }).toEqual({ familyB, status: 200 });
    expect(await userStatus(survivor, bearer(String(familyB.body['access_token'])))).toBe(200);
  } else {
    // The grant this login shared was lost with the answer: B logs in again, and nothing is revoked.
    expect(familyB).toEqual({ status: 400, body: expect.objectContaining({ error: 'invalid_grant' }) });
  }
  expect(await userStatus(survivor, bearer(user.b.token))).toBe(200);
  expect(await userStatus(survivor, user.session.bearer)).toBe(200);
  // The user can log in again at once, whatever became of the grant.
  const again = await cliLoginAs(survivor.url, fake, scenario.user);
  expect(claimsOf(again.token)['user_name']).toBe(scenario.user);
  expect(await userStatus(survivor, again.bearer)).toBe(200);
  // Once the survivor's line for that login is in, every line it wrote before is too (one pipe).
  const againJti = String(claimsOf(again.token)['jti']);
  await until('the survivor logs the last login', () => survivor.output().includes(againJti), 1_000);
  for (const output of [survivor.output().slice(survivorMark), holderNode.output()]) {
    expect(output).not.toContain('user revoked on every node');
    expect(output).not.toMatch(/"level":50/);
  }

  recordFigures('refresh lease', {
    [`${scenario.name}: client's retry answered (ms)`]: answerMs,
    [`${scenario.name}: holder gone, client's request failed after (ms)`]: clientFailedMs,
    [`${scenario.name}: holder exited after (ms)`]: exitMs,
  });
});
