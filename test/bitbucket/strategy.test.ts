import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import passport from 'passport';
import { BITBUCKET_CLOUD, BitbucketStrategy } from '../../lib/bitbucket';
import type { PkceStateStore } from '../../lib/bitbucket/strategy';
import type { BitbucketCloudConfig } from '../../lib/bitbucket/settings';
import type { Identity, UpstreamTokens } from '../../lib/connector';
import { SkyError } from '../../lib/errors';
import { FakeBitbucket } from '../../lib/testing';

/** The smallest state store passport-oauth2 accepts for PKCE: single-use handles in a Map. */
class MapStateStore implements PkceStateStore {
  readonly verifiers = new Map<string, string>();
  store(
    _req: Request,
    verifier: string,
    _state: never,
    _meta: unknown,
    cb: (err: Error | null, handle?: string) => void,
  ): void {
    const handle = randomBytes(12).toString('base64url');
    this.verifiers.set(handle, verifier);
    cb(null, handle);
  }
  verify(_req: Request, handle: string, cb: (err: Error | null, verifier: string | false) => void): void {
    const verifier = this.verifiers.get(handle);
    this.verifiers.delete(handle);
    cb(null, verifier ?? false);
  }
}

interface App {
  url: string;
  verified: { tokens: UpstreamTokens; identity: Identity }[];
  errors: unknown[];
  close(): Promise<void>;
}

let fake: FakeBitbucket;
const apps: App[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await fake.stop();
});
afterEach(() => {
  fake.clearFaults();
  fake.resetRequests();
});

/** An Express app that uses only the strategy: /login, /callback and one error handler. */
async function startApp(overrides: Partial<BitbucketCloudConfig> = {}): Promise<App> {
  const verified: App['verified'] = [];
  const errors: unknown[] = [];
  const app = express();
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const auth = new passport.Passport();
  auth.use(
    new BitbucketStrategy(
      { config: fake.connectorConfig(overrides), callbackURL: `${url}/callback`, store: new MapStateStore() },
      (_req, tokens, identity, done) => {
        verified.push({ tokens, identity });
        done(null, { id: identity.userId });
      },
    ),
  );
  app.use(auth.initialize());
  app.get('/login', auth.authenticate(BITBUCKET_CLOUD, { session: false }));
  app.get('/callback', auth.authenticate(BITBUCKET_CLOUD, { session: false }), (req, res) => {
    res.json({ user: req.user });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    errors.push(err);
    const e = err as { status?: number; code?: string };
    res.status(e.status ?? 500).json({ code: e.code ?? 'internal' });
  });
  const made: App = {
    url,
    verified,
    errors,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  apps.push(made);
  return made;
}

/** /login → the fake's consent (as `user`) → /callback, as a browser would, hop by hop. */
async function login(app: App, user: string): Promise<{ authorize: URL; callback: globalThis.Response }> {
  const start = await fetch(`${app.url}/login`, { redirect: 'manual' });
  expect(start.status).toBe(302);
  const authorize = new URL(start.headers.get('location') ?? '');
  fake.consentAs(user);
  const consent = await fetch(authorize, { redirect: 'manual' });
  expect(consent.status).toBe(302);
  const back = consent.headers.get('location') ?? '';
  expect(back.startsWith(`${app.url}/callback?`)).toBe(true);
  return { authorize, callback: await fetch(back, { redirect: 'manual' }) };
}

test('the strategy is named bitbucket-cloud', () => {
  const s = new BitbucketStrategy(
    { config: fake.connectorConfig(), callbackURL: 'http://127.0.0.1:1/cb', store: new MapStateStore() },
    (_req, _tokens, _identity, done) => done(null, false),
  );
  expect(s.name).toBe('bitbucket-cloud');
});

test('a full login: authorize URL with PKCE, then verify gets the tokens and the identity', async () => {
  const app = await startApp();
  const { authorize, callback } = await login(app, 'alice');
  expect(`${authorize.origin}${authorize.pathname}`).toBe(`${fake.webUrl}/site/oauth2/authorize`);
  expect(Object.fromEntries(authorize.searchParams)).toEqual({
    client_id: fake.client.id,
    response_type: 'code',
    scope: 'account email',
    redirect_uri: `${app.url}/callback`,
    state: expect.stringMatching(/.{10,}/),
    code_challenge: expect.stringMatching(/^[\w-]{43}$/),
    code_challenge_method: 'S256',
  });
  expect(callback.status).toBe(200);
  expect(await callback.json()).toEqual({ user: { id: '{a11ce000-0000-4000-8000-000000000001}' } });
  expect(app.verified).toHaveLength(1);
  const [{ tokens, identity } = {} as App['verified'][number]] = app.verified;
  expect(identity).toEqual({
    connector: 'bitbucket-cloud',
    userId: '{a11ce000-0000-4000-8000-000000000001}',
    accountId: '557058:a11ce000-0001',
    userName: 'alice',
    name: 'Alice Admin',
    email: 'alice@example.com',
    groups: ['acme', 'widgets'],
  });
  expect(tokens.accessToken).toMatch(/.{10,}/);
  expect(tokens.refreshToken).toMatch(/.{10,}/);
  expect(tokens.scopes).toEqual(['account', 'email']);
  expect(tokens.expiresAt).toBeGreaterThan(Date.now() + 7_000_000);
  // The fake checks the PKCE verifier against the challenge: one token request, and it passed.
  expect(fake.count('/site/oauth2/access_token')).toBe(1);
  // Client authentication is HTTP Basic (passport-oauth2's customHeaders), nothing in the query.
  const [post] = fake.requests.filter((r) => r.path === '/site/oauth2/access_token');
  expect(post?.method).toBe('POST');
  expect(post?.headers['authorization']).toBe(
    `Basic ${Buffer.from(`${fake.client.id}:${fake.client.secret}`).toString('base64')}`,
  );
  expect(post?.query).toEqual({});
  const api = fake.requests.filter((r) => r.path.startsWith('/2.0/'));
  for (const r of api) expect(r.headers['authorization']).toBe(`Bearer ${tokens.accessToken}`);
});

test('an unknown state is refused before any call to Bitbucket', async () => {
  const app = await startApp();
  const res = await fetch(`${app.url}/callback?code=abc&state=forged`, { redirect: 'manual' });
  expect(res.status).toBe(403);
  expect(fake.count('/site/oauth2/access_token')).toBe(0);
  expect(app.verified).toHaveLength(0);
});

test.each([
  ['an API answering 500', { match: 'api', status: 500 } as const, 'upstream_error', 502],
  ['a token endpoint answering HTML', { match: 'token', kind: 'html' } as const, 'upstream_error', 502],
  [
    'a token endpoint rate-limiting',
    { match: 'token', status: 429, retryAfter: 60 } as const,
    'upstream_rate_limited',
    503,
  ],
])('%s reaches the Express error handler as the SkyError itself', async (_name, fault, code, status) => {
  const app = await startApp();
  fake.addFault(fault);
  const { callback } = await login(app, 'alice');
  expect(callback.status).toBe(status);
  expect(await callback.json()).toEqual({ code });
  expect(app.errors).toHaveLength(1);
  expect(app.errors[0]).toBeInstanceOf(SkyError);
  expect(app.verified).toHaveLength(0);
});

test('a user outside the teams allow-list: not_in_allowed_teams (403) reaches the error handler', async () => {
  const app = await startApp({ teams: ['acme'] });
  const { callback } = await login(app, 'bob');
  expect(callback.status).toBe(403);
  expect(await callback.json()).toEqual({ code: 'not_in_allowed_teams' });
  expect((app.errors[0] as SkyError).message).toContain('acme');
});

test('a wrong client secret: upstream_error (502) that names the consumer, not the secret', async () => {
  const app = await startApp({ clientSecret: 'not-the-secret-123' });
  const { callback } = await login(app, 'alice');
  expect(callback.status).toBe(502);
  expect(await callback.json()).toEqual({ code: 'upstream_error' });
  const err = app.errors[0] as SkyError;
  expect(err).toBeInstanceOf(SkyError);
  expect(err.message).toContain('client id and secret');
  expect(err.message).not.toContain('not-the-secret-123');
});

test.each([
  ['503', { status: 503 } as const, 'upstream_error', 'answered 503 to the token request'],
  ['500', { status: 500 } as const, 'upstream_error', 'answered 500'],
  ['no answer at all', { kind: 'hang' } as const, 'upstream_timeout', 'did not answer within 300 ms'],
  [
    'slower than the timeout',
    { latencyMs: 800 } as const,
    'upstream_timeout',
    'did not answer within 300 ms',
  ],
  ['a 20 MB body', { kind: 'huge' } as const, 'upstream_error', 'more than 1048576 bytes'],
  ['a redirect elsewhere', { kind: 'redirect' } as const, 'upstream_error', 'without an access token'],
  ['malformed JSON', { kind: 'malformed' } as const, 'upstream_error', 'without an access token'],
])('the code exchange is one bounded attempt: %s is %s', async (_name, fault, code, message) => {
  const app = await startApp({ timeoutMs: 300 });
  fake.addFault({ match: 'token', ...fault });
  const started = Date.now();
  const { callback } = await login(app, 'alice');
  expect(Date.now() - started).toBeLessThan(3_000);
  expect(await callback.json()).toEqual({ code });
  expect((app.errors[0] as SkyError).message).toContain(message);
  expect(fake.count('/site/oauth2/access_token')).toBe(1);
  expect(app.verified).toHaveLength(0);
});

test('Bitbucket gone between the two legs: upstream_unavailable (503), the code not in the message', async () => {
  const gone = await FakeBitbucket.start();
  const app = await startApp({ ...gone.connectorConfig(), timeoutMs: 300 });
  const start = await fetch(`${app.url}/login`, { redirect: 'manual' });
  gone.consentAs('alice');
  const consent = await fetch(start.headers.get('location') ?? '', { redirect: 'manual' });
  const back = consent.headers.get('location') ?? '';
  const code = new URL(back).searchParams.get('code') ?? '';
  expect(code).not.toBe('');
  await gone.stop();
  const callback = await fetch(back, { redirect: 'manual' });
  expect(callback.status).toBe(503);
  expect(await callback.json()).toEqual({ code: 'upstream_unavailable' });
  expect((app.errors[0] as SkyError).message).not.toContain(code);
});
