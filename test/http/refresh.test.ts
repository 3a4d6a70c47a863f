import { generateKeyPairSync } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { FakeBitbucket } from '../../lib/testing';
import { freePort } from '../harness/global-setup';
import { cliLoginAs, loginAs } from '../harness/login';
import { startNode, testPrefix, testRedis, type TestNode } from '../harness/node';

/**
 * SPEC §8 through real HTTP on two nodes that share one Redis and one signing key: sealed upstream
 * tokens, rotating refresh tokens with reuse detection, upstream refresh once per user across nodes,
 * and the revocation of everything of a user whose Bitbucket grant is gone.
 */
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
const prefix = testPrefix();
let fake: FakeBitbucket;
let a: TestNode;
let b: TestNode;
let redis: Redis | Cluster;
/** A token of bob's from before the app was removed: refused then, and after a restart too. */
let revokedBob: { authorization: string } | undefined;

/** Two nodes behind one public URL (A's), as behind a load balancer: one issuer, one callback. */
let portA = 0;
const startPair = async (): Promise<[TestNode, TestNode]> => {
  portA ||= await freePort();
  const options = { keyPrefix: prefix, signingKey, externalUrl: `http://127.0.0.1:${portA}` };
  return Promise.all([startNode({ fake, options, port: portA }), startNode({ fake, options })]);
};

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  [a, b] = await startPair();
  const config = testRedis();
  redis = config.cluster ? new Cluster(config.cluster) : new Redis(config.url ?? '');
  await a.putTeam('builders', { member: { users: ['bob', 'carol'] } });
  await a.putTeam('acme-team', { viewer: { groups: ['acme'] } });
});
afterAll(async () => {
  await Promise.all([a.close(), b.close()]);
  redis.disconnect();
  await fake.stop();
});
beforeEach(() => fake.clearFaults());

interface TokenAnswer {
  status: number;
  body: {
    access_token?: string;
    refresh_token?: string;
    token_type?: string;
    expires_in?: number;
    error?: string;
  };
}

async function refresh(node: TestNode, refreshToken: string): Promise<TokenAnswer> {
  const res = await fetch(`${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
  return { status: res.status, body: (await res.json()) as TokenAnswer['body'] };
}

const claimsOf = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
const upstreamTokenCalls = (): number => fake.count('/site/oauth2/access_token');
const status = async (node: TestNode, bearer: { authorization: string }): Promise<number> =>
  (await fetch(`${node.url}/api/v1/user`, { headers: bearer })).status;

/** Every key of these nodes and its value, as Redis holds it. */
async function dumpRedis(): Promise<string> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  let dump = '';
  for (const node of nodes) {
    for (const key of await node.keys(`${prefix}*`)) {
      const type = await node.type(key);
      const value =
        type === 'string'
          ? await node.get(key)
          : type === 'hash'
            ? JSON.stringify(await node.hgetall(key))
            : type === 'set'
              ? JSON.stringify(await node.smembers(key))
              : type === 'zset'
                ? JSON.stringify(await node.zrange(key, '0', '-1'))
                : '';
      dump += `${key} ${value}\n`;
    }
  }
  return dump;
}

async function msUntil(check: () => Promise<boolean>, limitMs = 1000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > limitMs) throw new Error(`not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - started;
}

describe('the vault', () => {
  test('Redis holds no Bitbucket token and no refresh token in clear', async () => {
    const browser = await loginAs(a.url, fake, 'carol');
    const cli = await cliLoginAs(a.url, fake, 'carol');
    const secrets = fake.tokensOf('carol');
    expect(secrets.length).toBeGreaterThanOrEqual(2);
    const dump = await dumpRedis();
    expect(dump).toContain(':upstream v1.'); // sealed, versioned
    for (const secret of [...secrets, cli.refreshToken, cli.refreshToken.split('.')[1] ?? '']) {
      expect(secret.length).toBeGreaterThan(20);
      expect(dump).not.toContain(secret);
    }
    // The browser's refresh token is in the session only sealed.
    expect(dump).toMatch(/sess:[^ ]+ .*"skyRefresh":"v1\./);
    expect(dump).not.toContain(browser.token);
  });
});

describe('POST /sky/token', () => {
  test('answers RFC 6749: a new JWT, bearer, expires_in, and a rotated refresh token', async () => {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    const answer = await refresh(a, cli.refreshToken);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      access_token: expect.any(String),
      token_type: 'bearer',
      expires_in: 86_400,
      refresh_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/),
    });
    expect(answer.body.refresh_token).not.toBe(cli.refreshToken);
    expect(answer.body.access_token).not.toBe(cli.token);
    const claims = claimsOf(answer.body.access_token ?? '');
    expect(claims['sub']).toBe('bitbucket-cloud:{b0b00000-0000-4000-8000-000000000002}');
    expect(claims['sid']).toBe(claimsOf(cli.token)['sid']);
    expect(await status(a, { authorization: `Bearer ${answer.body.access_token}` })).toBe(200);
  });

  test('a refresh re-reads Bitbucket: a workspace joined since login brings its team', async () => {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    expect(claimsOf(cli.token)['groups']).toEqual(['widgets']);
    fake.joinWorkspace('bob', 'acme', 'member');
    try {
      const answer = await refresh(a, cli.refreshToken);
      expect(answer.status).toBe(200);
      const claims = claimsOf(answer.body.access_token ?? '');
      expect(claims['groups']).toEqual(expect.arrayContaining(['widgets', 'acme']));
      expect(claims['teams']).toEqual({ builders: ['member'], 'acme-team': ['viewer'] });
    } finally {
      fake.joinWorkspace('bob', 'acme', 'collaborator');
    }
  });

  test('reusing a rotated refresh token → invalid_grant, and the newer one of its family dies too', async () => {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    const first = await refresh(a, cli.refreshToken);
    expect(first.status).toBe(200);
    const reused = await refresh(b, cli.refreshToken);
    expect(reused).toEqual({
      status: 400,
      body: {
        error: 'invalid_grant',
        error_description: 'the refresh token was already used; its family is revoked',
      },
    });
    const newer = await refresh(a, first.body.refresh_token ?? '');
    expect(newer.status).toBe(400);
    expect(newer.body.error).toBe('invalid_grant');
    // Another login of the same user is another family, untouched.
    const other = await cliLoginAs(a.url, fake, 'bob');
    expect((await refresh(a, other.refreshToken)).status).toBe(200);
  });

  test('knowing a family id (it is the JWT sid) is not enough to end the family', async () => {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    const sid = String(claimsOf(cli.token)['sid']);
    const forged = await refresh(a, `${sid}.${'x'.repeat(43)}`);
    expect(forged).toEqual({
      status: 400,
      body: { error: 'invalid_grant', error_description: 'the refresh token is unknown, expired or revoked' },
    });
    expect((await refresh(a, cli.refreshToken)).status).toBe(200);
  });

  test('an upstream refresh whose answer was lost: "log in again", and nobody is revoked', async () => {
    const one = await cliLoginAs(a.url, fake, 'carol');
    const two = await cliLoginAs(a.url, fake, 'carol');
    fake.expireAccessTokens();
    // Bitbucket rotates its refresh token, but answers after sky gave up (timeout 1 s).
    fake.addFault({ match: 'token', latencyMs: 1_500, times: 1 });
    const lost = await refresh(a, one.refreshToken);
    expect(lost.status).toBe(504);
    expect(lost.body.error).toBe('temporarily_unavailable');
    await new Promise((r) => setTimeout(r, 700)); // the fake finishes its (rotating) answer
    const again = await refresh(a, one.refreshToken);
    expect(again.body).toEqual({
      error: 'invalid_grant',
      error_description: 'the upstream grant was lost in an interrupted refresh: log in again',
    });
    expect((await refresh(b, two.refreshToken)).body.error).toBe('invalid_grant');
    // Not a revocation: carol's tokens keep working, and she can log in again.
    for (const t of [one, two]) expect(await status(a, t.bearer)).toBe(200);
    const fresh = await cliLoginAs(a.url, fake, 'carol');
    expect((await refresh(b, fresh.refreshToken)).status).toBe(200);
  });

  test('an expired Bitbucket token: exactly one upstream refresh, and the rotated one is used next time', async () => {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    let presented = cli.refreshToken;
    for (let round = 0; round < 3; round++) {
      fake.expireAccessTokens();
      const before = upstreamTokenCalls();
      const answer = await refresh(round % 2 === 0 ? a : b, presented);
      // A stale upstream refresh token would be refused by the fake (it rotates) and end the grant.
      expect(answer.status).toBe(200);
      expect(upstreamTokenCalls() - before).toBe(1);
      presented = answer.body.refresh_token ?? '';
    }
    // Fresh upstream tokens: no upstream refresh at all.
    const before = upstreamTokenCalls();
    expect((await refresh(a, presented)).status).toBe(200);
    expect(upstreamTokenCalls()).toBe(before);
  });

  test('two concurrent refreshes of one user on two nodes → one upstream refresh', async () => {
    const one = await cliLoginAs(a.url, fake, 'carol');
    const two = await cliLoginAs(b.url, fake, 'carol');
    fake.expireAccessTokens();
    // A slow token endpoint, so both nodes are inside their refresh at once.
    fake.addFault({ match: 'token', latencyMs: 300 });
    const before = upstreamTokenCalls();
    const [ra, rb] = await Promise.all([refresh(a, one.refreshToken), refresh(b, two.refreshToken)]);
    expect([ra.status, rb.status]).toEqual([200, 200]);
    expect(upstreamTokenCalls() - before).toBe(1);
  });

  test('Bitbucket failing during a refresh: 502 temporarily_unavailable, and the refresh token still works', async () => {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    fake.addFault({ match: 'api', status: 503 });
    const down = await refresh(a, cli.refreshToken);
    expect(down.status).toBe(502);
    expect(down.body.error).toBe('temporarily_unavailable');
    fake.clearFaults();
    expect((await refresh(a, cli.refreshToken)).status).toBe(200);
  });

  test.each([
    ['no grant_type', 'refresh_token=x', 400, 'invalid_request', 'grant_type is missing'],
    ['another grant', 'grant_type=password&username=a', 400, 'unsupported_grant_type', /password/],
    ['no refresh_token', 'grant_type=refresh_token', 400, 'invalid_request', 'refresh_token is missing'],
    [
      'a repeated parameter',
      'grant_type=refresh_token&refresh_token=a&refresh_token=b',
      400,
      'invalid_request',
      /more than once/,
    ],
    [
      'a malformed token',
      'grant_type=refresh_token&refresh_token=abc',
      400,
      'invalid_grant',
      'the refresh token is malformed',
    ],
    [
      'an unknown token',
      `grant_type=refresh_token&refresh_token=${'A'.repeat(43)}.${'B'.repeat(43)}`,
      400,
      'invalid_grant',
      'the refresh token is unknown, expired or revoked',
    ],
  ])('%s → %s %s', async (_what, body, code, error, description) => {
    const res = await fetch(`${a.url}/sky/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect(res.status).toBe(code);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const answer = (await res.json()) as { error: string; error_description: string };
    expect(answer.error).toBe(error);
    expect(answer.error_description).toEqual(
      typeof description === 'string' ? description : expect.stringMatching(description),
    );
  });

  test('a JSON body or a huge form is refused with invalid_request', async () => {
    const json = await fetch(`${a.url}/sky/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: 'x' }),
    });
    expect(json.status).toBe(400);
    expect(((await json.json()) as { error: string }).error).toBe('invalid_request');
    const huge = await fetch(`${a.url}/sky/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=refresh_token&refresh_token=${'x'.repeat(20_000)}`,
    });
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as { error: string }).error).toBe('invalid_request');
  });

  test('a user no longer in any team gets invalid_grant', async () => {
    await a.putTeam('solo', { owner: { users: ['dave'] } });
    const cli = await cliLoginAs(a.url, fake, 'dave');
    await a.putTeam('solo', { owner: { users: ['carol'] } });
    await new Promise((r) => setTimeout(r, 50));
    const answer = await refresh(a, cli.refreshToken);
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({
      error: 'invalid_grant',
      error_description: 'you are no longer a member of any team',
    });
    // The refusal came before the rotation: the token is not spent, and works again once dave is back.
    await a.putTeam('solo', { owner: { users: ['dave'] } });
    await new Promise((r) => setTimeout(r, 50));
    expect((await refresh(a, cli.refreshToken)).status).toBe(200);
  });
});

describe('logout', () => {
  test('a CLI logout ends its refresh family as well as its token', async () => {
    const cli = await cliLoginAs(a.url, fake, 'bob');
    expect((await fetch(`${b.url}/sky/logout`, { method: 'POST', headers: cli.bearer })).status).toBe(204);
    expect((await refresh(a, cli.refreshToken)).body.error).toBe('invalid_grant');
  });
});

describe('the browser session keeps its refresh token', () => {
  test('an expired cookie is renewed at /sky/login from the session, without a trip to Bitbucket', async () => {
    const browser = await loginAs(a.url, fake, 'carol');
    const oldJwt = browser.token;
    browser.browser.jar.delete('skymarshal_auth'); // as when the cookie expires
    fake.resetRequests();
    const hop = await browser.browser.request(`${a.url}/sky/login?redirect_uri=/x`);
    expect(hop.status).toBe(302);
    expect(new URL(hop.location ?? '').pathname).toBe('/x');
    expect(fake.count('/site/oauth2/authorize')).toBe(0);
    expect(fake.count(/^\/2\.0\/user$/)).toBe(1); // the identity was read anew
    const renewed = decodeURIComponent(browser.browser.jar.get('skymarshal_auth') ?? '').slice(
      'bearer '.length,
    );
    expect(renewed).not.toBe(oldJwt);
    expect(claimsOf(renewed)['sid']).toBe(claimsOf(oldJwt)['sid']);
    // It rotated: a second renewal works too.
    browser.browser.jar.delete('skymarshal_auth');
    expect((await browser.browser.request(`${b.url}/sky/login`)).status).toBe(302);
    expect(browser.browser.jar.has('skymarshal_auth')).toBe(true);
  });
});

describe('the user removes the app in Bitbucket', () => {
  test('within 1 s every token and session of that user is refused on both nodes; others untouched', async () => {
    const tokens = [await cliLoginAs(a.url, fake, 'bob'), await cliLoginAs(b.url, fake, 'bob')];
    const browser = await loginAs(a.url, fake, 'bob');
    const carol = await cliLoginAs(a.url, fake, 'carol');
    for (const node of [a, b]) for (const t of tokens) expect(await status(node, t.bearer)).toBe(200);

    revokedBob = browser.bearer;
    fake.revokeGrant('bob');
    const answer = await refresh(b, tokens[0]?.refreshToken ?? '');
    expect(answer.status).toBe(400);
    expect(answer.body.error).toBe('invalid_grant');

    for (const node of [a, b]) {
      for (const t of [...tokens, browser]) {
        await msUntil(async () => (await status(node, t.bearer)) === 401);
      }
      const cookie = await browser.browser.request(`${node.url}/api/v1/user`);
      expect(cookie.status).toBe(401);
    }
    // Every refresh token of bob is dead; the session's too (no silent renewal: off to Bitbucket).
    expect((await refresh(a, tokens[1]?.refreshToken ?? '')).body.error).toBe('invalid_grant');
    browser.browser.jar.delete('skymarshal_auth');
    fake.consentAs(null);
    const login = await browser.browser.request(`${a.url}/sky/login`);
    expect(login.location).toMatch(new RegExp(`^${fake.url}/site/oauth2/authorize`));
    expect(await dumpRedis()).not.toMatch(/"skySubject":"bitbucket-cloud:\{b0b0/);

    // Carol is untouched.
    expect(await status(a, carol.bearer)).toBe(200);
    expect((await refresh(b, carol.refreshToken)).status).toBe(200);
    fake.consentAs('alice');
  });
});

describe('a restart of both nodes', () => {
  test('keeps logouts and revocations (they live in Redis), and refresh tokens', async () => {
    const out = await cliLoginAs(a.url, fake, 'carol');
    const kept = await cliLoginAs(a.url, fake, 'carol');
    await fetch(`${a.url}/sky/logout`, { method: 'POST', headers: out.bearer });

    await Promise.all([a.close(), b.close()]);
    [a, b] = await startPair();

    for (const node of [a, b]) {
      expect(await status(node, out.bearer)).toBe(401);
      expect(await status(node, kept.bearer)).toBe(200);
      expect(await status(node, revokedBob ?? { authorization: 'Bearer none' })).toBe(401);
    }
    expect((await refresh(b, out.refreshToken)).body.error).toBe('invalid_grant');
    expect((await refresh(b, kept.refreshToken)).status).toBe(200);
  });
});
