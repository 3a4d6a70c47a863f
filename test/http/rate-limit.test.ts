import { generateKeyPairSync } from 'node:crypto';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { metricSample } from '../harness/metrics';
import { startNode, testPrefix, type TestNode } from '../harness/node';

/**
 * Abuse (SPEC §4.1): what costs something is limited per client IP, with counters in Redis shared by
 * every node: failed login callbacks (a bad state, a refused code) and token requests. Successful logins
 * are not: an office behind one address logs in as often as it needs. Past the limit, 429 with Retry-After.
 */
const LIMIT = 5;
let fake: FakeBitbucket;
let a: TestNode;
let b: TestNode;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  fake.consentAs('alice');
  const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  const options = { keyPrefix: testPrefix(), signingKey, rateLimit: { perMinute: LIMIT } };
  // B trusts the loopback proxy in front of it, so X-Forwarded-For names the client there.
  [a, b] = await Promise.all([
    startNode({ fake, options }),
    startNode({ fake, options, routes: (app) => app.set('trust proxy', 'loopback') }),
  ]);
});
afterAll(async () => {
  await Promise.all([a.close(), b.close()]);
  await fake.stop();
});

const login = (node: TestNode, headers: Record<string, string> = {}) =>
  fetch(`${node.url}/sky/login`, { redirect: 'manual', headers });
/** A callback with a state nobody issued: a failure, counted. */
const badCallback = (node: TestNode, headers: Record<string, string> = {}) =>
  fetch(`${node.url}/sky/issuer/callback?code=x&state=forged`, { redirect: 'manual', headers });
const token = (node: TestNode, headers: Record<string, string> = {}) =>
  fetch(`${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: 'grant_type=refresh_token&refresh_token=x',
  });

test('failed callbacks from one client meet the limit: 429 with Retry-After and a page that says so', async () => {
  const client = { 'x-forwarded-for': '203.0.113.7' };
  const statuses: number[] = [];
  for (let i = 0; i < LIMIT; i++) statuses.push((await badCallback(b, client)).status);
  expect(statuses).toEqual(Array(LIMIT).fill(400));
  const refused = await badCallback(b, { ...client, accept: 'text/html' });
  expect(refused.status).toBe(429);
  const retryAfter = Number(refused.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(refused.headers.get('ratelimit-limit')).toBe(String(LIMIT));
  expect(refused.headers.get('ratelimit-remaining')).toBe('0');
  expect(await refused.text()).toContain('Too many attempts');
  expect(await metricSample(b, 'sky_rate_limited_total', { limit: 'login' })).toBe(1);
  // Starting a login costs nothing and is not limited; another client behind the proxy is not affected.
  expect((await login(b, client)).status).toBe(302);
  expect((await badCallback(b, { 'x-forwarded-for': '203.0.113.8' })).status).toBe(400);
});

test('the count is shared: failures at A and at B from one address add up', async () => {
  // A does not trust proxies: every request here comes from 127.0.0.1 (X-Forwarded-For is ignored, so
  // a client cannot dodge the limit by inventing one).
  const statuses: number[] = [];
  for (let i = 0; i < LIMIT + 1; i++)
    statuses.push((await badCallback(a, { 'x-forwarded-for': `198.51.100.${i}` })).status);
  expect(statuses.slice(0, LIMIT)).toEqual(Array(LIMIT).fill(400));
  expect(statuses[LIMIT]).toBe(429);
  // B sees 127.0.0.1 too when no X-Forwarded-For is sent: the same, already spent bucket.
  expect((await badCallback(b)).status).toBe(429);
});

test('with the default settings, 300 logins from one address within a minute all succeed; 300 bad callbacks meet the limit', async () => {
  const office = await startNode({ fake, options: { rateLimit: {} } });
  try {
    expect(office.router.config.rateLimitPerMinute).toBe(60);
    const started = Date.now();
    const landed: number[] = [];
    const one = async (): Promise<void> => {
      const hops = await new Browser().follow(`${office.url}/sky/login`, 3);
      landed.push(hops[2]?.status ?? 0);
    };
    for (let i = 0; i < 30; i++) await Promise.all(Array.from({ length: 10 }, one));
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(landed).toEqual(Array(300).fill(302));
    const bad: number[] = [];
    for (let i = 0; i < 300; i++) bad.push((await badCallback(office)).status);
    expect(bad.slice(0, 60)).toEqual(Array(60).fill(400));
    expect(bad.filter((status) => status === 429).length).toBeGreaterThanOrEqual(239);
    const refused = await badCallback(office);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  } finally {
    await office.close();
  }
}, 90_000);

test('the token endpoint has its own bucket, with RFC 6749 bodies past the limit', async () => {
  const client = { 'x-forwarded-for': '203.0.113.50' };
  for (let i = 0; i < LIMIT; i++) expect((await token(b, client)).status).toBe(400); // invalid_grant: counted
  const refused = await token(b, client);
  expect(refused.status).toBe(429);
  expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
  expect(await refused.json()).toEqual({
    error: 'invalid_request',
    error_description: expect.stringContaining('Too many token requests'),
  });
  expect(await metricSample(b, 'sky_rate_limited_total', { limit: 'token' })).toBe(1);
  // Logins of that client are a separate budget.
  expect((await login(b, client)).status).toBe(302);
});

test('the API itself is not limited (guards cost no Redis round trip)', async () => {
  for (let i = 0; i < LIMIT * 3; i++) expect((await fetch(`${a.url}/api/v1/user`)).status).toBe(401);
});
