import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { startNode, type TestNode } from '../harness/node';

let fake: FakeBitbucket;
let node: TestNode;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
  fake.consentAs('alice');
  node = await startNode({ fake });
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

async function loggedIn(): Promise<{ browser: Browser; token: string; csrf: string }> {
  const browser = new Browser();
  const hops = await browser.follow(`${node.url}/sky/login`, 3);
  const csrf = new URL(hops[2]?.location ?? '').searchParams.get('csrf_token') ?? '';
  const token = decodeURIComponent(browser.jar.get('skymarshal_auth') ?? '').slice('bearer '.length);
  return { browser, token, csrf };
}

test('POST /sky/logout with a Bearer token revokes it, and it is refused afterwards', async () => {
  const { token } = await loggedIn();
  const auth = { authorization: `Bearer ${token}` };
  expect((await fetch(`${node.url}/api/v1/user`, { headers: auth })).status).toBe(200);
  const out = await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: auth });
  expect(out.status).toBe(204);
  expect((await fetch(`${node.url}/api/v1/user`, { headers: auth })).status).toBe(401);
});

test('logout from the landing page form: cookies cleared, session destroyed, token refused', async () => {
  const { browser, token, csrf } = await loggedIn();
  const out = await browser.request(`${node.url}/sky/logout`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
    body: `csrf_token=${encodeURIComponent(csrf)}`,
  });
  expect(out.status).toBe(303);
  expect(out.location).toBe(`${node.url}/`);
  for (const name of ['skymarshal_auth', 'skymarshal_csrf']) {
    expect(out.setCookies.find((c) => c.startsWith(`${name}=`))).toMatch(/Expires=Thu, 01 Jan 1970/);
  }
  expect(browser.jar.has('skymarshal_auth')).toBe(false);
  const again = await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${token}` } });
  expect(again.status).toBe(401);
});

test('a cookie POST to /sky/logout without the CSRF token is 401 and revokes nothing', async () => {
  const { browser, token } = await loggedIn();
  const out = await browser.request(`${node.url}/sky/logout`, { method: 'POST' });
  expect(out.status).toBe(401);
  expect(
    (await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${token}` } })).status,
  ).toBe(200);
});

test('GET /sky/logout (Concourse) works with the cookie; without a token it is 401', async () => {
  const { browser } = await loggedIn();
  const out = await browser.request(`${node.url}/sky/logout`, { headers: { accept: 'text/html' } });
  expect(out.status).toBe(303);
  const none = await fetch(`${node.url}/sky/logout`, { method: 'POST' });
  expect(none.status).toBe(401);
  const legacy = await fetch(`${node.url}/logout`, { redirect: 'manual' });
  expect(legacy.headers.get('location')).toBe(`${node.url}/sky/logout`);
});

test('the landing page drops a revoked token cookie and shows the login page', async () => {
  const { browser, token } = await loggedIn();
  await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  const page = await browser.request(`${node.url}/`);
  expect(page.status).toBe(200);
  expect(page.body).toContain('Log in with Bitbucket Cloud');
  expect(page.setCookies.find((c) => c.startsWith('skymarshal_auth=;'))).toMatch(/Expires=Thu, 01 Jan 1970/);
  expect(browser.jar.has('skymarshal_auth')).toBe(false);
});
