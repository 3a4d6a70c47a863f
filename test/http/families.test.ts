import { generateKeyPairSync } from 'node:crypto';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { cliLoginAs, loginAs, tokenRequest } from '../harness/login';
import { startNode, testPrefix, type TestNode } from '../harness/node';

/**
 * A login is a family (SPEC §8, issue #13): every credential it produced (browser cookie tokens, CLI
 * tokens, refresh tokens, the session) ends with it, on every node within a second and after a restart.
 * Two nodes share one Redis and one signing key, as a real deployment does.
 */
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
const prefix = testPrefix();
const options = { keyPrefix: prefix, signingKey };

let fake: FakeBitbucket;
let a: TestNode;
let b: TestNode;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  a = await startNode({ fake, options });
  // One public URL in front of both nodes (tokens name it as their issuer).
  b = await startNode({ fake, options: { ...options, externalUrl: a.externalUrl } });
  await a.putTeam('builders', { member: { users: ['bob', 'carol'] } });
});
afterAll(async () => {
  await Promise.all([a.close(), b.close()]);
  await fake.stop();
});

const sidOf = (jwt: string): unknown =>
  (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { sid?: unknown }).sid;

/** The status of GET /api/v1/user with the token as a Bearer header, or as the browser's cookie. */
async function statusOf(node: TestNode, jwt: string, as: 'header' | 'cookie'): Promise<number> {
  const headers =
    as === 'header'
      ? { authorization: `Bearer ${jwt}` }
      : { cookie: `skymarshal_auth=${encodeURIComponent(`bearer ${jwt}`)}` };
  return (await fetch(`${node.url}/api/v1/user`, { headers })).status;
}

/** Polls until every token is refused both ways on the node; fails after `ms`. */
async function allRefused(node: TestNode, jwts: string[], ms = 1_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    const statuses = await Promise.all(
      jwts.flatMap((jwt) => [statusOf(node, jwt, 'header'), statusOf(node, jwt, 'cookie')]),
    );
    if (statuses.every((s) => s === 401)) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`still accepted after ${ms} ms: ${statuses.join(',')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The browser's session renewal: its token cookie is gone, its session is not. */
async function renew(browser: Browser, node: TestNode): Promise<string> {
  browser.jar.delete('skymarshal_auth');
  const hop = await browser.request(`${node.url}/sky/login`);
  expect(hop.status).toBe(302);
  expect(new URL(hop.location ?? '').origin).toBe(a.url); // the public URL, not Bitbucket
  return decodeURIComponent(browser.jar.get('skymarshal_auth') ?? '').slice('bearer '.length);
}

const logout = (node: TestNode, jwt: string): Promise<Response> =>
  fetch(`${node.url}/sky/logout`, { method: 'POST', headers: { authorization: `Bearer ${jwt}` } });

test('browser: a login and two renewals give T1, T2, T3 of one family; logout with T3 ends all of them everywhere, also after a restart', async () => {
  const { browser, token: t1 } = await loginAs(a.url, fake, 'bob');
  const t2 = await renew(browser, a);
  const t3 = await renew(browser, b);
  expect(new Set([t1, t2, t3]).size).toBe(3);
  expect(new Set([sidOf(t1), sidOf(t2), sidOf(t3)]).size).toBe(1);
  for (const jwt of [t1, t2, t3]) expect(await statusOf(b, jwt, 'header')).toBe(200);

  expect((await logout(a, t3)).status).toBe(204);
  await allRefused(b, [t1, t2, t3]);
  await allRefused(a, [t1, t2, t3], 0);
  // The session went with the family: no renewal, the browser is sent to Bitbucket.
  browser.jar.delete('skymarshal_auth');
  const again = await browser.request(`${a.url}/sky/login`);
  expect(new URL(again.location ?? '').origin).toBe(new URL(fake.webUrl).origin);

  // Both nodes restart: the revocation was in Redis all along.
  const restarted = { ...options, externalUrl: a.externalUrl };
  const [a2, b2] = await Promise.all([
    startNode({ fake, options: restarted }),
    startNode({ fake, options: restarted }),
  ]);
  try {
    await allRefused(a2, [t1, t2, t3], 0);
    await allRefused(b2, [t1, t2, t3], 0);
  } finally {
    await Promise.all([a2.close(), b2.close()]);
  }
});

test('CLI: the code, then two refreshes give T1, T2, T3 of one family; logout with T3 ends T1 and T2 on the other node', async () => {
  const cli = await cliLoginAs(a.url, fake, 'carol');
  const second = await tokenRequest(a.url, { grant_type: 'refresh_token', refresh_token: cli.refreshToken });
  const third = await tokenRequest(b.url, {
    grant_type: 'refresh_token',
    refresh_token: String(second.body['refresh_token']),
  });
  const [t1, t2, t3] = [cli.token, String(second.body['access_token']), String(third.body['access_token'])];
  expect(new Set([sidOf(t1), sidOf(t2), sidOf(t3)]).size).toBe(1);
  expect((await logout(b, t3)).status).toBe(204);
  await allRefused(a, [t1, t2, t3]);
  // The refresh token ended too.
  const after = await tokenRequest(a.url, {
    grant_type: 'refresh_token',
    refresh_token: String(third.body['refresh_token']),
  });
  expect(after.body['error']).toBe('invalid_grant');
});

test('a spent refresh token presented again ends every access token of its family', async () => {
  const cli = await cliLoginAs(a.url, fake, 'carol');
  const rotated = await tokenRequest(a.url, { grant_type: 'refresh_token', refresh_token: cli.refreshToken });
  expect(rotated.status).toBe(200);
  const victims = [cli.token, String(rotated.body['access_token'])];
  for (const jwt of victims) expect(await statusOf(b, jwt, 'header')).toBe(200);
  // The thief (or the victim) presents the spent token.
  const reused = await tokenRequest(b.url, { grant_type: 'refresh_token', refresh_token: cli.refreshToken });
  expect(reused.body['error']).toBe('invalid_grant');
  await allRefused(a, victims);
  await allRefused(b, victims);
  // Another login of the same person is not touched.
  const other = await cliLoginAs(a.url, fake, 'carol');
  expect(await statusOf(b, other.token, 'header')).toBe(200);
});

test('50 runs of a refresh racing a logout (2 ms apart) leave no live token', async () => {
  const live: string[] = [];
  const tokens: string[] = [];
  for (let run = 0; run < 50; run++) {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    // Half the runs refresh on the other node, so the race also spans nodes.
    const refreshing = tokenRequest(run % 2 ? b.url : a.url, {
      grant_type: 'refresh_token',
      refresh_token: cli.refreshToken,
    });
    await new Promise((resolve) => setTimeout(resolve, 2));
    const [answer, out] = await Promise.all([refreshing, logout(a, cli.token)]);
    expect(out.status).toBe(204);
    tokens.push(cli.token);
    if (typeof answer.body['access_token'] === 'string') tokens.push(answer.body['access_token']);
  }
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  for (const jwt of tokens) {
    for (const node of [a, b]) if ((await statusOf(node, jwt, 'header')) !== 401) live.push(jwt);
  }
  expect(live).toEqual([]);
}, 60_000);

test('a planted sky_session renewed gets a new session id, and the old id logs nobody in', async () => {
  const owner = await loginAs(a.url, fake, 'bob');
  const planted = owner.browser.jar.get('sky_session') ?? '';
  expect(planted).not.toBe('');
  // Another browser is handed the owner's session cookie (and no token).
  const victim = new Browser();
  victim.jar.set('sky_session', planted);
  const renewed = await victim.request(`${a.url}/sky/login`);
  expect(renewed.status).toBe(302);
  expect(new URL(renewed.location ?? '').origin).toBe(a.url);
  const fresh = victim.jar.get('sky_session') ?? '';
  expect(fresh).not.toBe('');
  expect(fresh).not.toBe(planted);
  // Whoever still holds the planted id gets no login as its owner: the session is gone.
  const attacker = new Browser();
  attacker.jar.set('sky_session', planted);
  const tried = await attacker.request(`${b.url}/sky/login`);
  expect(new URL(tried.location ?? '').origin).toBe(new URL(fake.webUrl).origin);
  expect(attacker.jar.has('skymarshal_auth')).toBe(false);
});
