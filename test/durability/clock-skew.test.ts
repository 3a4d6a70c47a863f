import { rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { CLOCK_MARGIN_MS } from '../../lib/clock';
import { FakeBitbucket } from '../../lib/testing';
import { recordFigures } from '../harness/figures';
import { cliLoginAs, loginAs, tokenRequest } from '../harness/login';
import { testPrefix, testRedisEnv } from '../harness/node';
import { fakeBitbucketEnv, spawnWebNode, type NodeProcess } from '../harness/process';

/**
 * Issue #15, "clock skew" (SPEC §8: issue, verify and revoke by the time the nodes agree on, Redis's):
 * under libfaketime, a node 120 s fast (F) and one on time (T), behind one public URL. The fast node
 * warns of its skew and reports it in /metrics; fresh logins on either node (and logins that start on
 * one and return to the other) work on both, and their `iat` is the real time; a logout or a user-wide
 * revocation made on either node refuses the tokens of both nodes at once, and a login right after the
 * clock margin is accepted; restarted nodes (the fast one too) still refuse every live revocation.
 */
jest.setTimeout(90_000);

const SKEW_S = 120;
/**
 * Short tokens, so revocations end within the skew: a node that trimmed them by its own fast clock
 * would drop them at once. A family's end is kept 30 + 60 (leeway) + 30 s, a user's not-before
 * 30 + 60 + 2 s: both shorter than 120 s. Every token used here still verifies (leeway) to the end:
 * alice's, issued first and never revoked, answers 200 at the end to show it.
 */
const AUTH_DURATION_S = 30;
/** "At once": a revocation reaches every node within a second (pub/sub). */
const PROPAGATION_LIMIT_MS = 1_000;
/** A user-wide revocation's not-before lies the clock margin ahead, rounded up to a second. */
const RELOGIN_AFTER_MS = CLOCK_MARGIN_MS + 1_000 + 200;

type Bearer = { authorization: string };
type NodeName = 'F' | 'T';

/** One public URL in front of both nodes, as a load balancer: the test picks the node for each path. */
interface Balancer {
  url: string;
  /** Which node serves a request to this path. */
  route: (path: string) => NodeProcess;
  close(): Promise<void>;
}

async function startBalancer(): Promise<Balancer> {
  const balancer: Balancer = {
    url: '',
    route: () => {
      throw new Error('no node behind the balancer yet');
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server: Server = createServer((req, res) => {
    const target = new URL(req.url ?? '/', balancer.route(req.url ?? '/').url);
    const upstream = request(target, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  balancer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = balancer.close;
  balancer.close = () => {
    server.closeAllConnections();
    return close();
  };
  return balancer;
}

let fake: FakeBitbucket;
let balancer: Balancer;
let env: Record<string, string>;
const nodes: Record<NodeName, NodeProcess | undefined> = { F: undefined, T: undefined };
const node = (name: NodeName): NodeProcess => {
  const found = nodes[name];
  if (!found) throw new Error(`node ${name} is not running`);
  return found;
};
const spawn = (name: NodeName): Promise<NodeProcess> =>
  spawnWebNode(env, undefined, name === 'F' ? { clockOffsetSeconds: SKEW_S } : {});

/** alice's token, issued first and never revoked: shows that every older token still verifies. */
let control: Bearer;
/** Tokens that were logged out or whose user was revoked: refused everywhere, restarts included. */
const revoked: { what: string; auth: Bearer }[] = [];
/** bob's logins made after his latest revocation: live until the next one. */
let bobsLatest: { what: string; auth: Bearer }[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  balancer = await startBalancer();
  env = {
    ...testRedisEnv(),
    ...fakeBitbucketEnv(fake),
    CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice,bob',
    CONCOURSE_AUTH_DURATION: `${AUTH_DURATION_S}s`,
    SKY_KEY_PREFIX: testPrefix(),
    SKY_RATE_LIMIT_PER_MINUTE: '0',
    CONCOURSE_EXTERNAL_URL: balancer.url,
  };
  [nodes.F, nodes.T] = await Promise.all([spawn('F'), spawn('T')]);
  control = (await browserLogin('alice', 'T')).auth;
}, 60_000);
afterAll(async () => {
  await Promise.all([nodes.F?.stop(), nodes.T?.stop()]);
  await balancer?.close();
  await fake?.stop();
  // The signing key's folder (fakeBitbucketEnv made it).
  const key = env?.['CONCOURSE_SESSION_SIGNING_KEY'];
  if (key) rmSync(path.dirname(key), { recursive: true, force: true });
});

const claimsOf = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
const userStatus = async (name: NodeName, auth: Bearer): Promise<number> =>
  (await fetch(`${node(name).url}/api/v1/user`, { headers: auth })).status;
const statusOnBoth = async (auth: Bearer): Promise<Record<NodeName, number>> => ({
  F: await userStatus('F', auth),
  T: await userStatus('T', auth),
});

async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  limitMs: number,
): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - started;
}

/** How long until both nodes refuse the token (401). */
const msUntilRefusedOnBoth = (what: string, auth: Bearer): Promise<number> =>
  until(
    `${what} refused on both nodes`,
    async () => {
      const status = await statusOnBoth(auth);
      return status.F === 401 && status.T === 401;
    },
    PROPAGATION_LIMIT_MS,
  );

/**
 * The node whose log names the token as issued (its `jti`): the balancer really sent the login there.
 * The token's own answer may overtake the log line in the pipe, so this waits for it a moment.
 */
async function expectIssuedBy(name: NodeName, token: string): Promise<void> {
  const jti = String(claimsOf(token)['jti']);
  await until(`node ${name} logs token ${jti}`, () => node(name).output().includes(jti), 1_000);
  expect(node(name === 'F' ? 'T' : 'F').output()).not.toContain(jti);
}

/** The token's `iat` is the real time (the jest process runs on the true clock), not the node's own. */
function expectIssuedNow(token: string): void {
  const claims = claimsOf(token);
  const iat = Number(claims['iat']);
  expect(Math.abs(iat - Date.now() / 1000)).toBeLessThan(5);
  expect(Number(claims['exp']) - iat).toBe(AUTH_DURATION_S);
}

/** A browser login: /sky/login answered by `starts`, the callback (which issues) by `returns`. */
async function browserLogin(
  user: string,
  starts: NodeName,
  returns: NodeName = starts,
): Promise<{ token: string; auth: Bearer }> {
  balancer.route = (path) => node(path.startsWith('/sky/issuer/callback') ? returns : starts);
  const login = await loginAs(balancer.url, fake, user);
  await expectIssuedBy(returns, login.token);
  return { token: login.token, auth: login.bearer };
}

/** A CLI login (page, click, code redemption) all through one node, which issues the token. */
async function cliLogin(
  user: string,
  issuer: NodeName,
): Promise<{ token: string; auth: Bearer; refreshToken: string }> {
  balancer.route = () => node(issuer);
  const login = await cliLoginAs(balancer.url, fake, user);
  await expectIssuedBy(issuer, login.token);
  expectIssuedNow(login.token);
  return { token: login.token, auth: login.bearer, refreshToken: login.refreshToken };
}

/** The first `"clock skew:"` warning a node logged, parsed. */
function skewWarning(output: string): { level: number; msg: string; skewMs: number } | undefined {
  const line = output.split('\n').find((l) => l.includes('"msg":"clock skew:'));
  return line === undefined
    ? undefined
    : (JSON.parse(line) as { level: number; msg: string; skewMs: number });
}

async function skewGauge(name: NodeName): Promise<number> {
  const text = await (await fetch(`${node(name).url}/metrics`)).text();
  const value = /^sky_clock_skew_seconds (\S+)$/m.exec(text)?.[1];
  if (value === undefined) throw new Error(`no sky_clock_skew_seconds in /metrics of ${name}:\n${text}`);
  return Number(value);
}

test('the fast node warns of its skew and reports it in /metrics; the node on time does not', async () => {
  const warning = skewWarning(node('F').output());
  if (!warning) throw new Error(`the fast node logged no clock skew warning:\n${node('F').output()}`);
  expect(warning.level).toBe(40);
  const secondsAhead = Number(
    /^clock skew: this node's clock is (\d+) s ahead of Redis's clock/.exec(warning.msg)?.[1],
  );
  expect({ msg: warning.msg, off: Math.abs(secondsAhead - SKEW_S) <= 3 }).toEqual({
    msg: warning.msg,
    off: true,
  });
  expect(Math.abs(warning.skewMs / 1000 - SKEW_S)).toBeLessThanOrEqual(3);
  expect(skewWarning(node('T').output())).toBeUndefined();

  const gauges = { F: await skewGauge('F'), T: await skewGauge('T') };
  expect(Math.abs(gauges.F - SKEW_S)).toBeLessThanOrEqual(3);
  expect(Math.abs(gauges.T)).toBeLessThanOrEqual(1);
  recordFigures('clock skew', { 'skew measured on the fast node (s)': gauges.F.toFixed(3) });
});

test('fresh logins on either node, or across them, work on both, with iat at the real time', async () => {
  const logins: { what: string; token: string; auth: Bearer }[] = [];
  for (const [starts, returns] of [
    ['F', 'F'],
    ['T', 'T'],
    ['F', 'T'],
    ['T', 'F'],
  ] as const) {
    const login = await browserLogin('bob', starts, returns);
    logins.push({ what: `browser login ${starts}→${returns}`, ...login });
  }
  for (const issuer of ['F', 'T'] as const) {
    const login = await cliLogin('bob', issuer);
    logins.push({ what: `CLI login on ${issuer}`, ...login });
  }
  for (const login of logins) {
    expectIssuedNow(login.token);
    expect({ what: login.what, status: await statusOnBoth(login.auth) }).toEqual({
      what: login.what,
      status: { F: 200, T: 200 },
    });
  }
});

test('a logout on either node refuses the token on both at once', async () => {
  const figures: Record<string, number> = {};
  for (const [issuer, logoutOn] of [
    ['T', 'F'],
    ['F', 'T'],
  ] as const) {
    const login = await browserLogin('bob', issuer);
    expect(await statusOnBoth(login.auth)).toEqual({ F: 200, T: 200 });
    const out = await fetch(`${node(logoutOn).url}/sky/logout`, { method: 'POST', headers: login.auth });
    expect(out.status).toBe(204);
    expect(await userStatus(logoutOn, login.auth)).toBe(401);
    const what = `a token of ${issuer} logged out on ${logoutOn}`;
    figures[`${what}: refused on both after (ms)`] = await msUntilRefusedOnBoth(what, login.auth);
    revoked.push({ what, auth: login.auth });
  }
  recordFigures('clock skew', figures);
});

test.each(['T', 'F'] as const)(
  'bob removes the app, noticed on %s: his tokens of both nodes are refused on both, a login after the margin is accepted',
  async (revoker) => {
    const before = [
      // The logins after the previous revocation end with this one too.
      ...bobsLatest,
      { what: 'browser login on F', auth: (await browserLogin('bob', 'F')).auth },
      { what: 'browser login on T', auth: (await browserLogin('bob', 'T')).auth },
    ];
    const cli = { F: await cliLogin('bob', 'F'), T: await cliLogin('bob', 'T') };
    before.push({ what: 'CLI login on F', auth: cli.F.auth }, { what: 'CLI login on T', auth: cli.T.auth });
    for (const { auth } of before) expect(await statusOnBoth(auth)).toEqual({ F: 200, T: 200 });

    // The user removed the app: the revoker learns it from Bitbucket's answer to a refresh.
    fake.revokeGrant('bob');
    const mark = node(revoker).output().length;
    const refreshed = await tokenRequest(node(revoker).url, {
      grant_type: 'refresh_token',
      refresh_token: cli[revoker].refreshToken,
    });
    const revokedAt = Date.now();
    expect(refreshed).toEqual({
      status: 400,
      body: expect.objectContaining({
        error: 'invalid_grant',
        error_description: expect.stringMatching(/every session of this user is revoked/),
      }),
    });
    await until(
      `${revoker} logs the revocation`,
      () => node(revoker).output().slice(mark).includes('user revoked on every node'),
      1_000,
    );
    const figures: Record<string, number> = {};
    for (const { what, auth } of before) {
      const ms = await msUntilRefusedOnBoth(what, auth);
      figures[`revoked on ${revoker}: ${what} refused on both after (ms)`] = ms;
      revoked.push({ what: `${what}, bob revoked on ${revoker}`, auth });
    }
    expect(await statusOnBoth(control)).toEqual({ F: 200, T: 200 });

    // bob logs in again (a new consent upstream) once the revocation's margin has passed.
    bobsLatest = [];
    await new Promise((r) => setTimeout(r, Math.max(0, revokedAt + RELOGIN_AFTER_MS - Date.now())));
    for (const issuer of ['F', 'T'] as const) {
      const again = await browserLogin('bob', issuer);
      expectIssuedNow(again.token);
      expect({ issuer, status: await statusOnBoth(again.auth) }).toEqual({
        issuer,
        status: { F: 200, T: 200 },
      });
      bobsLatest.push({
        what: `bob's login on ${issuer} after his revocation on ${revoker}`,
        auth: again.auth,
      });
    }
    recordFigures('clock skew', figures);
  },
);

test.each(['T', 'F'] as const)('%s restarted: every live revocation is still refused there', async (name) => {
  // Two logouts, bob's four logins of each revocation and the two he made between them.
  expect(revoked.length).toBe(2 + 4 + (2 + 4));
  await node(name).stop();
  nodes[name] = await spawn(name);
  for (const { what, auth } of revoked) {
    expect({ what, status: await statusOnBoth(auth) }).toEqual({ what, status: { F: 401, T: 401 } });
  }
  // Still within every token's verification: the refusals above are revocations, not expiry.
  for (const { what, auth } of [{ what: "alice's token", auth: control }, ...bobsLatest]) {
    expect({ what, status: await statusOnBoth(auth) }).toEqual({ what, status: { F: 200, T: 200 } });
  }
  for (const each of ['F', 'T'] as const) expect(node(each).output()).not.toMatch(/"level":50/);
});
