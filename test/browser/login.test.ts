import pino from 'pino';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { FakeBitbucket } from '../../lib/testing';
import {
  expectAccessible,
  expectSafePage,
  freshContext,
  launchChromium,
  screenshot,
} from '../harness/chromium';
import { startNode, type TestNode } from '../harness/node';
import { decide, grantAndLand, h1, logIn, startLogin } from './steps';

/**
 * The browser experience in a real browser (headless Chromium): log in through the fake Bitbucket's
 * consent page, land on the teams, call the API from the page, log out and be refused; every error page
 * of SPEC §4.2 a person can reach; and a wrong callback URL stopping the flow where it breaks.
 */
jest.setTimeout(60_000);

let chromium: Browser;
let fake: FakeBitbucket;
let node: TestNode;
let context: BrowserContext | undefined;
/** Every line the node logs, at debug level and without redaction: no token may appear in any. */
const logLines: string[] = [];
/** Every secret a login handed out (JWT, CSRF token, OAuth code and state), for the log check. */
const secrets = new Set<string>();

beforeAll(async () => {
  chromium = await launchChromium();
  fake = await FakeBitbucket.start();
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
  node = await startNode({ fake, options: { logger } });
  await node.putTeam('acme', { member: { groups: ['acme'] } });
  await node.putTeam('widgets', { owner: { users: ['bob'] }, viewer: { groups: ['widgets'] } });
});
afterAll(async () => {
  await node?.close();
  await fake?.stop();
  await chromium?.close();
});
beforeEach(() => {
  fake.clearFaults();
  fake.consentAs(null); // the real consent form, clicked in the browser
});
afterEach(async () => {
  await context?.close();
  context = undefined;
});

async function newPage(): Promise<Page> {
  context = await freshContext(chromium);
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  return page;
}

/** The secrets a landed login holds: its cookies, and the code and state of its callback. */
async function rememberSecrets(page: Page, callbackUrl: string): Promise<{ jwt: string; csrf: string }> {
  const cookies = new Map((await page.context().cookies()).map((c) => [c.name, c.value]));
  const jwt = decodeURIComponent(cookies.get('skymarshal_auth') ?? '').replace(/^bearer /, '');
  const csrf = cookies.get('skymarshal_csrf') ?? '';
  const callback = new URL(callbackUrl);
  for (const secret of [jwt, csrf, callback.searchParams.get('code'), callback.searchParams.get('state')]) {
    if (secret) secrets.add(secret);
  }
  return { jwt, csrf };
}

test('the login page offers Bitbucket Cloud, with safe headers, and is accessible', async () => {
  const page = await newPage();
  const home = await page.goto(`${node.url}/`);
  await expectSafePage(home);
  expect(await h1(page)).toBe('Log in');
  const login = page.getByRole('link', { name: 'Log in with Bitbucket Cloud' });
  expect(await login.getAttribute('href')).toBe(`${node.externalUrl}/sky/login`);
  await screenshot(page, 'login');
  // Keyboard users: a skip link first, then a visible focus ring on each control.
  const focused = () =>
    page.evaluate<{ text: string; outline: string; left: number }>(
      `(() => { const el = document.activeElement, style = getComputedStyle(el);
        return { text: el.textContent.trim(), outline: style.outlineStyle + ' ' + style.outlineWidth,
                 left: el.getBoundingClientRect().left }; })()`,
    );
  await page.keyboard.press('Tab');
  expect(await focused()).toEqual({
    text: 'Skip to content',
    outline: 'solid 3px',
    left: expect.any(Number),
  });
  expect((await focused()).left).toBeGreaterThanOrEqual(0);
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  expect(await focused()).toMatchObject({ text: 'Log in with Bitbucket Cloud', outline: 'solid 3px' });
  await expectAccessible(page);
});

test('log in, consent at the fake, see the teams, call the API from the page, log out and be refused', async () => {
  const page = await newPage();
  await startLogin(page, node.url);
  await expectAccessible(page); // the fake's consent page
  await screenshot(page, 'consent');

  const { callback, callbackUrl, landing } = await grantAndLand(page, node.url, 'alice', 'Alice Admin');
  expect(callback.status()).toBe(302);
  await expectSafePage(landing);
  const { jwt, csrf } = await rememberSecrets(page, callbackUrl);
  expect(jwt.split('.')).toHaveLength(3);
  // The CSRF token arrived in the address bar (Concourse's way), was kept for scripts and dropped from it.
  expect(new URL(landing.url()).searchParams.get('csrf_token')).toBe(csrf);
  expect(page.url()).toBe(`${node.url}/`);
  expect(await page.evaluate<string | null>("sessionStorage.getItem('sky.csrf_token')")).toBe(csrf);

  // The teams and roles, from the current team configs.
  const rows = (await page.locator('tbody tr').allInnerTexts()).map((row) => row.replace(/\s+/g, ' ').trim());
  expect(rows).toEqual(['acme member', 'main owner', 'widgets viewer']);
  expect(await page.locator('dl').innerText()).toMatch(/Admin\s+yes \(owner of main\)/);

  // A guarded API, called by the page's own script with the login cookie.
  await page.getByRole('button', { name: 'Check my access with the API' }).click();
  const result = page.locator('#api-result');
  await result.filter({ hasText: 'The API knows you as alice' }).waitFor();
  expect(await result.textContent()).toBe(
    'The API knows you as alice: acme (member), main (owner), widgets (viewer).',
  );
  await expectAccessible(page);
  await page.mouse.move(0, 0); // no hover state in the picture
  await screenshot(page, 'landing');

  // A guarded unsafe API call from the page: the cookie plus the CSRF token the page kept.
  const put = (withCsrf: boolean) =>
    page.evaluate<number>(
      `fetch('/api/v1/teams/browser-made', { method: 'PUT', credentials: 'same-origin',
         headers: Object.assign({ 'content-type': 'application/json' },
           ${withCsrf} ? { 'x-csrf-token': sessionStorage.getItem('sky.csrf_token') } : {}),
         body: JSON.stringify({ auth: { viewer: { users: ['alice'] } } }) }).then((r) => r.status)`,
    );
  expect(await put(true)).toBe(201);
  await page.reload();
  expect(await page.locator('tbody tr', { hasText: 'browser-made' }).innerText()).toMatch(/viewer/);

  // Log out: back on the login page, and the page's API call is refused.
  const loggedOut = page.waitForResponse(
    (r) => r.url() === `${node.url}/?logged_out=1` && r.request().method() === 'GET',
  );
  await page.getByRole('button', { name: 'Log out' }).click();
  await expectSafePage(await loggedOut);
  expect(await h1(page)).toBe('Log in');
  expect(await page.getByRole('status').innerText()).toBe(
    'You are logged out: that login has ended on every node of this CI server.',
  );
  expect((await page.context().cookies()).map((c) => c.name)).not.toContain('skymarshal_auth');
  expect(
    await page.evaluate<number>(
      "fetch('/api/v1/user', { credentials: 'same-origin' }).then((r) => r.status)",
    ),
  ).toBe(401);
  // The token itself is revoked, not only forgotten by this browser.
  const again = await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${jwt}` } });
  expect(again.status).toBe(401);
  // And the CSRF guard holds: a cookie login cannot change a team without the header.
  await logIn(page, node.url, 'alice', 'Alice Admin');
  expect(await put(false)).toBe(401);
});

test('Deny at the fake → the access_denied page, whose "Log in again" starts over', async () => {
  const page = await newPage();
  await startLogin(page, node.url);
  const { callback } = await decide(page, 'alice', 'Deny');
  await expectSafePage(callback, 403);
  expect(await h1(page)).toBe('Access was not granted');
  // sky's own sentence for access_denied, never the query's free text (the fake sends one).
  const text = await page.locator('main').innerText();
  expect(text).toContain('You did not grant this CI server access to your Bitbucket Cloud account.');
  expect(text).not.toContain('The user denied access.');
  await expectAccessible(page);
  await screenshot(page, 'error-access-denied');
  await page.getByRole('link', { name: 'Log in again' }).click();
  await page.waitForURL((url) => url.pathname === '/site/oauth2/authorize');
  expect(await h1(page)).toBe('Grant access');
});

test('a user in no team (dave) → the not_in_any_team page', async () => {
  const page = await newPage();
  await startLogin(page, node.url);
  const { callback } = await decide(page, 'dave', 'Grant access');
  await expectSafePage(callback, 403);
  expect(await h1(page)).toBe('You are not a member of any team');
  expect(await page.locator('main').innerText()).toContain('sky set-team');
  expect((await page.context().cookies()).map((c) => c.name)).not.toContain('skymarshal_auth');
  await expectAccessible(page);
  await screenshot(page, 'error-not-in-any-team');
});

test('a replayed callback → the invalid_state page', async () => {
  const page = await newPage();
  const { callbackUrl } = await logIn(page, node.url, 'bob', 'Bob Builder');
  await rememberSecrets(page, callbackUrl);
  const replay = await page.goto(callbackUrl);
  await expectSafePage(replay, 400);
  expect(await h1(page)).toBe('This login link is no longer valid');
  await expectAccessible(page);
  await screenshot(page, 'error-invalid-state');
});

test('Bitbucket failing at the token exchange → the upstream error page', async () => {
  const page = await newPage();
  await startLogin(page, node.url);
  fake.addFault({ match: 'token', status: 500 });
  const { callback } = await decide(page, 'alice', 'Grant access');
  await expectSafePage(callback, 502);
  expect(await h1(page)).toBe('Bitbucket Cloud answered with an error');
  expect(await page.locator('.reference').innerText()).toMatch(
    /^Reference for your administrator: [0-9a-f-]{36} \(HTTP 502\)$/,
  );
  await expectAccessible(page);
  await screenshot(page, 'error-upstream');
});

test('a wrong callback URL at Bitbucket stops the login at the fake, and the happy path says so', async () => {
  const wrongFake = await FakeBitbucket.start();
  wrongFake.setCallbackUrl('http://127.0.0.1:1/wrong');
  const wrongNode = await startNode({ fake: wrongFake });
  try {
    const page = await newPage();
    // The same steps as the happy path fail, naming the step and what the browser shows instead.
    await expect(logIn(page, wrongNode.url, 'alice', 'Alice Admin')).rejects.toThrow(
      /step "consent at Bitbucket Cloud" stopped at .*: the page says "Invalid redirect_uri"/,
    );
    expect(await page.locator('main').innerText()).toContain('does not match the callback URL');
    expect(wrongFake.requests.some((r) => r.path === '/site/oauth2/access_token')).toBe(false);
    expect((await page.context().cookies()).map((c) => c.name)).not.toContain('skymarshal_auth');
    await expectAccessible(page);
    await screenshot(page, 'fake-invalid-redirect-uri');
  } finally {
    await wrongNode.close();
    await wrongFake.stop();
  }
});

test('nothing the node logged carries a token, a CSRF token, a code or a state', () => {
  expect(logLines.length).toBeGreaterThan(0);
  expect(secrets.size).toBeGreaterThanOrEqual(6);
  for (const secret of secrets) {
    expect(logLines.filter((line) => line.includes(secret))).toEqual([]);
  }
});
