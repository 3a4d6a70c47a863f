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
  expect(out.location).toBe(`${node.url}/?logged_out=1`);
  const page = await browser.request(out.location ?? '');
  expect(page.body).toContain('You are logged out: that login has ended on every node of this CI server.');
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

test('a cookie-only GET /sky/logout revokes nothing: it asks, and the page’s POST form logs out', async () => {
  const { browser, token } = await loggedIn();
  const bearer = { authorization: `Bearer ${token}` };
  // What a link or an <img> on another site makes a browser send.
  const asked = await browser.request(`${node.url}/sky/logout`, { headers: { accept: 'text/html' } });
  expect(asked.status).toBe(200);
  expect(asked.setCookies).toEqual([]);
  expect(asked.body).toContain('<button type="submit" class="button">Log out</button>');
  expect((await fetch(`${node.url}/api/v1/user`, { headers: bearer })).status).toBe(200);
  const legacy = await browser.request(`${node.url}/logout`);
  expect(legacy.location).toBe(`${node.url}/sky/logout`);
  expect((await fetch(`${node.url}/api/v1/user`, { headers: bearer })).status).toBe(200);

  // The button: a POST with the page's CSRF field.
  const action = /<form method="post" action="([^"]+)"/.exec(asked.body)?.[1] ?? '';
  const csrf = /name="csrf_token" value="([^"]+)"/.exec(asked.body)?.[1] ?? '';
  expect(action).toBe(`${node.url}/sky/logout`);
  const out = await browser.request(action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
    body: new URLSearchParams({ csrf_token: csrf }).toString(),
  });
  expect(out.status).toBe(303);
  expect((await fetch(`${node.url}/api/v1/user`, { headers: bearer })).status).toBe(401);
});

test('GET /sky/logout with a Bearer token (the CLI, as Concourse) logs out; with no token it is 401', async () => {
  const { token } = await loggedIn();
  const bearer = { authorization: `Bearer ${token}` };
  const out = await fetch(`${node.url}/sky/logout`, { headers: bearer });
  expect(out.status).toBe(204);
  expect((await fetch(`${node.url}/api/v1/user`, { headers: bearer })).status).toBe(401);
  expect((await fetch(`${node.url}/sky/logout`)).status).toBe(401);
  expect((await fetch(`${node.url}/sky/logout`, { method: 'POST' })).status).toBe(401);
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
