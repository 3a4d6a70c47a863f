import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { FakeBitbucket } from '../../lib/testing';
import {
  expectAccessible,
  expectSafePage,
  freshContext,
  launchChromium,
  screenshot,
} from '../harness/chromium';
import { freePort } from '../harness/global-setup';
import { startNode, type TestNode } from '../harness/node';
import { decide, h1 } from './steps';

/**
 * A CLI-style login in a real browser (SPEC §4.6, §9): the fly success page hands the token to the
 * CLI's local port; when nothing listens there, it shows the token with a copy button instead.
 */
jest.setTimeout(60_000);

let chromium: Browser;
let fake: FakeBitbucket;
let node: TestNode;
let context: BrowserContext | undefined;

beforeAll(async () => {
  chromium = await launchChromium();
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
});
afterAll(async () => {
  await node?.close();
  await fake?.stop();
  await chromium?.close();
});
afterEach(async () => {
  await context?.close();
  context = undefined;
});

/** What `sky login` does: listen on a free loopback port and wait for `?token=`. */
async function listenLikeTheCli(): Promise<{ port: number; received: Promise<string>; server: Server }> {
  let got: (url: string) => void = () => undefined;
  const received = new Promise<string>((resolve) => (got = resolve));
  const server = createServer((req, res) => {
    got(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, received, server };
}

/**
 * Opens /sky/login?fly_port=… in a fresh browser and grants access as alice: the callback is the fly
 * page. `browserJwt` is the browser's own cookie token; the CLI gets a token of its own.
 */
async function flyLogin(port: number): Promise<{ page: Page; browserJwt: string; navigated: string[] }> {
  context = await freshContext(chromium);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: node.url });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const navigated: string[] = [];
  page.on('framenavigated', (frame) => navigated.push(frame.url()));
  await page.goto(`${node.url}/sky/login?fly_port=${port}`);
  expect(await h1(page)).toBe('Grant access');
  const { callback } = await decide(page, 'alice', 'Grant access');
  await expectSafePage(callback);
  const csp = (await callback.allHeaders())['content-security-policy'] ?? '';
  expect(csp).toContain(`connect-src http://127.0.0.1:${port};`);
  const cookie = (await context.cookies()).find((c) => c.name === 'skymarshal_auth')?.value ?? '';
  const browserJwt = decodeURIComponent(cookie).replace(/^bearer /, '');
  expect(browserJwt.split('.')).toHaveLength(3);
  return { page, browserJwt, navigated };
}

const sidOf = (jwt: string): unknown =>
  (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { sid?: unknown }).sid;

async function userOf(jwt: string): Promise<string> {
  const user = await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${jwt}` } });
  expect(user.status).toBe(200);
  return ((await user.json()) as { user_name: string }).user_name;
}

test('the fly success page hands the token to the listening CLI', async () => {
  const cli = await listenLikeTheCli();
  try {
    const { page, browserJwt, navigated } = await flyLogin(cli.port);
    const received = new URL(await cli.received, 'http://127.0.0.1');
    expect([...received.searchParams.keys()]).toEqual(['token', 'refresh_token']);
    const jwt = (received.searchParams.get('token') ?? '').replace(/^bearer /, '');
    const refreshToken = received.searchParams.get('refresh_token') ?? '';
    // The CLI's own token and refresh family, apart from the browser's cookie and session.
    expect(jwt).not.toBe(browserJwt);
    expect(sidOf(jwt)).not.toBe(sidOf(browserJwt));
    await page.getByRole('heading', { name: 'You are logged in' }).waitFor();
    expect(await page.locator('#detail').textContent()).toContain('Return to your terminal');
    expect(await page.locator('#manual').isHidden()).toBe(true);
    // The token the CLI received works as a Bearer token, and its refresh token at /sky/token.
    expect(await userOf(jwt)).toBe('alice');
    const refreshed = await fetch(`${node.url}/sky/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
    });
    expect(refreshed.status).toBe(200);
    // The token travelled in a fetch to the CLI only, never in an address the browser keeps.
    expect(navigated.filter((url) => url.includes(jwt))).toEqual([]);
    await expectAccessible(page);
    await screenshot(page, 'fly-handed-over');
  } finally {
    await new Promise((resolve) => cli.server.close(resolve));
  }
});

test('with no CLI listening, the fly success page shows the token and copies it', async () => {
  const port = await freePort(); // nothing listens there
  const { page, browserJwt, navigated } = await flyLogin(port);
  await page.getByRole('heading', { name: 'Copy your token' }).waitFor();
  const token = page.getByLabel('Token for the sky CLI');
  const jwt = (await token.inputValue()).replace(/^bearer /, '');
  expect(jwt).not.toBe(browserJwt);
  expect(await userOf(jwt)).toBe('alice');
  await page.getByRole('button', { name: 'Copy token' }).click();
  await page.locator('#copied', { hasText: 'Copied.' }).waitFor();
  expect(await page.evaluate<string>('navigator.clipboard.readText()')).toBe(`bearer ${jwt}`);
  expect(navigated.filter((url) => url.includes(jwt))).toEqual([]);
  await expectAccessible(page);
  await screenshot(page, 'fly-manual');
});
