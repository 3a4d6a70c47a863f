import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { BitbucketClient } from '../../lib/bitbucket';
import { SkyError } from '../../lib/errors';
import { FakeBitbucket } from '../../lib/testing';
import { freePort } from '../harness/global-setup';
import { CALLBACK, codeFor, exchangeCode, failureOf, tokensFor } from './fake-login';

let fake: FakeBitbucket;
let client: BitbucketClient;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  client = new BitbucketClient(fake.connectorConfig());
});
afterAll(() => fake.stop());
afterEach(() => {
  fake.clearFaults();
  fake.resetRequests();
  fake.tokenStyle = { scopeField: 'scope', expiresInAsString: false };
});

describe('the token endpoint', () => {
  test('a code exchange is read as: scope list, expiry from expires_in', async () => {
    const before = Date.now();
    const tokens = await tokensFor(fake, 'alice');
    expect(tokens.accessToken).toMatch(/.{10,}/);
    expect(tokens.refreshToken).toMatch(/.{10,}/);
    expect(tokens.scopes).toEqual(['account', 'email']);
    expect(tokens.expiresAt).toBeGreaterThanOrEqual(before + 7_200_000);
    expect(tokens.expiresAt).toBeLessThanOrEqual(Date.now() + 7_200_000);
  });

  test('accepts the older `scopes` field and expires_in as a string', async () => {
    fake.tokenStyle = { scopeField: 'scopes', expiresInAsString: true };
    const before = Date.now();
    const tokens = await tokensFor(fake, 'alice');
    expect(tokens.scopes).toEqual(['account', 'email']);
    expect(tokens.expiresAt).toBeGreaterThanOrEqual(before + 7_200_000);
  });

  test('sends the PKCE verifier; a wrong one is invalid_grant', async () => {
    const verifier = 'v'.repeat(50);
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const extra = { code_challenge: challenge, code_challenge_method: 'S256' };
    await expect(
      exchangeCode(fake, await codeFor(fake, 'alice', extra), CALLBACK, verifier),
    ).resolves.toEqual(expect.objectContaining({ scopes: ['account', 'email'] }));
    const err = await failureOf(
      exchangeCode(fake, await codeFor(fake, 'alice', extra), CALLBACK, 'w'.repeat(50)),
    );
    expect(err).toBeInstanceOf(SkyError);
    expect(err.code).toBe('invalid_grant');
  });

  test('a used code is invalid_grant (400), and the message does not repeat the code', async () => {
    const code = await codeFor(fake, 'alice');
    await exchangeCode(fake, code);
    const err = await failureOf(exchangeCode(fake, code));
    expect(err.code).toBe('invalid_grant');
    expect(err.status).toBe(400);
    expect(err.message).not.toContain(code);
  });

  test('refresh tokens rotate; the old one is then revoked, the new one works', async () => {
    const first = await tokensFor(fake, 'alice');
    const second = await client.refresh(first.refreshToken ?? '');
    expect(second.refreshToken).toBeDefined();
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.accessToken).not.toBe(first.accessToken);
    const reused = await failureOf(client.refresh(first.refreshToken ?? ''));
    expect(reused.code).toBe('upstream_revoked');
    expect(reused.status).toBe(401);
    expect(reused.message).not.toContain(first.refreshToken);
    await expect(client.refresh(second.refreshToken ?? '')).resolves.toHaveProperty('accessToken');
  });

  test('a grant the user revoked: refresh is upstream_revoked', async () => {
    fake.addUser({
      key: 'erin',
      uuid: '{e0000000-0000-4000-8000-000000000009}',
      account_id: '557058:e0000000-0009',
      username: 'erin',
      nickname: 'erin',
      display_name: 'Erin',
      emails: [],
    });
    const tokens = await tokensFor(fake, 'erin');
    fake.revokeGrant('erin');
    expect((await failureOf(client.refresh(tokens.refreshToken ?? ''))).code).toBe('upstream_revoked');
    expect((await failureOf(client.user(tokens.accessToken))).code).toBe('upstream_revoked');
  });
});

describe('the REST API', () => {
  let access: string;
  beforeAll(async () => {
    access = (await tokensFor(fake, 'alice')).accessToken;
  });

  test('user, emails, permission and 1.0 groups read what Bitbucket says', async () => {
    expect(await client.user(access)).toEqual({
      uuid: '{a11ce000-0000-4000-8000-000000000001}',
      account_id: '557058:a11ce000-0001',
      username: 'alice',
      nickname: 'alice',
      display_name: 'Alice Admin',
    });
    expect(await client.emails(access)).toEqual([
      { email: 'alice@example.com', is_primary: true, is_confirmed: true },
    ]);
    expect(await client.permission(access, 'acme')).toBe('owner');
    expect(await client.permission(access, 'widgets')).toBe('member');
    const groups = await client.groups(access, 'acme');
    expect(groups.map((g) => g.slug).sort()).toEqual(['developers', 'ops']);
    expect(groups.find((g) => g.slug === 'developers')?.members).toContainEqual({
      uuid: '{a11ce000-0000-4000-8000-000000000001}',
      account_id: '557058:a11ce000-0001',
    });
  });

  test('1.0 groups of a workspace the user does not administer: upstream_forbidden', async () => {
    const err = await failureOf(client.groups(access, 'widgets'));
    expect(err).toBeInstanceOf(SkyError);
    // Bitbucket's refusal has a code of its own, never sky's `forbidden` (whose page blames the team config).
    expect(err.code).toBe('upstream_forbidden');
  });

  test('sends the access token only as a Bearer header, never in a query', async () => {
    fake.resetRequests();
    await client.user(access);
    await client.emails(access);
    await client.workspaces(access);
    expect(fake.requests.length).toBe(3);
    for (const r of fake.requests) {
      expect(r.headers['authorization']).toBe(`Bearer ${access}`);
      expect(JSON.stringify(r.query)).not.toContain(access);
    }
  });

  test('pages through 150 workspaces with pagelen=100, following `next` as given', async () => {
    for (let i = 0; i < 150; i++) {
      fake.addWorkspace({ slug: `page-${i}`, uuid: `{p-${i}}`, name: `P${i}`, members: [], groups: [] });
      fake.joinWorkspace('dave', `page-${i}`, 'member');
    }
    const dave = (await tokensFor(fake, 'dave')).accessToken;
    fake.resetRequests();
    const all = await client.workspaces(dave);
    expect(all).toHaveLength(150);
    expect(new Set(all.map((w) => w.workspace.slug)).size).toBe(150);
    expect(all[0]).toEqual({ administrator: false, workspace: { slug: 'page-0', uuid: '{p-0}' } });
    expect(fake.requests.map((r) => r.query)).toEqual([{ pagelen: '100' }, { pagelen: '100', page: '2' }]);
  });

  test('an expired access token is upstream_revoked (401)', async () => {
    const t = await tokensFor(fake, 'bob');
    fake.expireAccessTokens();
    const err = await failureOf(client.user(t.accessToken));
    expect(err.code).toBe('upstream_revoked');
    expect(err.status).toBe(401);
    expect(err.message).not.toContain(t.accessToken);
  });
});

describe('faults', () => {
  let access: string;
  beforeAll(async () => {
    access = (await tokensFor(fake, 'alice')).accessToken;
  });

  test('500 forever: upstream_error (502) after retries + 1 calls', async () => {
    fake.addFault({ match: 'api', status: 500 });
    const err = await failureOf(client.user(access));
    expect(err.code).toBe('upstream_error');
    expect(err.status).toBe(502);
    expect(fake.count('/2.0/user')).toBe(3);
  });

  test('one 429, then an answer: the call succeeds', async () => {
    fake.addFault({ match: 'api', status: 429, times: 1 });
    await expect(client.user(access)).resolves.toHaveProperty('username', 'alice');
    expect(fake.count('/2.0/user')).toBe(2);
  });

  test('429 forever: upstream_rate_limited (503) after retries + 1 calls', async () => {
    fake.addFault({ match: 'api', status: 429 });
    const err = await failureOf(client.workspaces(access));
    expect(err.code).toBe('upstream_rate_limited');
    expect(err.status).toBe(503);
    expect(fake.count('/2.0/user/workspaces')).toBe(3);
  });

  test('429 with Retry-After: 30 fails fast as upstream_rate_limited instead of waiting', async () => {
    fake.addFault({ match: 'api', status: 429, retryAfter: 30 });
    const started = Date.now();
    const err = await failureOf(client.user(access));
    expect(err.code).toBe('upstream_rate_limited');
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(fake.count('/2.0/user')).toBe(1);
  });

  test('429 with Retry-After: 1 is honoured, then the call succeeds', async () => {
    fake.addFault({ match: 'api', status: 429, retryAfter: 1, times: 1 });
    await client.user(access);
    const [first, second] = fake.requests;
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(990);
  });

  test.each(['malformed', 'html', 'huge', 'redirect'] as const)(
    '%s answer: upstream_error (502), not retried',
    async (kind) => {
      fake.addFault({ match: 'api', kind });
      const err = await failureOf(client.workspaces(access));
      expect(err).toBeInstanceOf(SkyError);
      expect(err.code).toBe('upstream_error');
      expect(err.status).toBe(502);
      expect(fake.count('/2.0/user/workspaces')).toBe(1);
    },
  );

  test('a hanging API: upstream_timeout (504), each attempt bounded by timeoutMs', async () => {
    const quick = new BitbucketClient(fake.connectorConfig({ timeoutMs: 300, retries: 1 }));
    fake.addFault({ match: 'api', kind: 'hang' });
    const started = Date.now();
    const err = await failureOf(quick.user(access));
    const elapsed = Date.now() - started;
    expect(err.code).toBe('upstream_timeout');
    expect(err.status).toBe(504);
    expect(err.message).toBe('Bitbucket Cloud did not answer within 300 ms (the user)');
    expect(fake.count('/2.0/user')).toBe(2);
    expect(elapsed).toBeGreaterThanOrEqual(600);
    expect(elapsed).toBeLessThan(2 * 1_000);
  });

  test('connection refused: upstream_unavailable (503)', async () => {
    const port = await freePort();
    const down = new BitbucketClient(
      fake.connectorConfig({ apiUrl: `http://127.0.0.1:${port}`, webUrl: `http://127.0.0.1:${port}` }),
    );
    const err = await failureOf(down.user(access));
    expect(err.code).toBe('upstream_unavailable');
    expect(err.status).toBe(503);
    const token = await failureOf(down.refresh('some-refresh-token'));
    expect(token.code).toBe('upstream_unavailable');
    expect(token.message).not.toContain('some-refresh-token');
  });

  test('a `next` page on another origin is refused, not followed', async () => {
    const elsewhere = await freePort();
    const api: Server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          values: [{ administrator: false, workspace: { slug: 'one', uuid: '{1}' } }],
          next: `http://127.0.0.1:${elsewhere}/2.0/user/workspaces?page=2`,
        }),
      );
      void req;
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const address = api.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const odd = new BitbucketClient(fake.connectorConfig({ apiUrl: `http://127.0.0.1:${port}` }));
      const err = await failureOf(odd.workspaces(access));
      expect(err.code).toBe('upstream_error');
      expect(err.message).toContain('another host');
    } finally {
      await new Promise<void>((resolve) => api.close(() => resolve()));
    }
  });
});
