import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page, Request, Response } from 'playwright-core';
import { connectRedis } from '../../lib/store';
import { FakeBitbucket } from '../../lib/testing';
import { challengeOf, confirmationCode } from '../../lib/tokens/pkce';
import { printedLoginUrl, readSkyrc, start, tempSkyrc, waitFor, type Running } from '../cli/cli';
import {
  expectAccessible,
  expectSafePage,
  freshContext,
  launchChromium,
  screenshot,
} from '../harness/chromium';
import { freePort } from '../harness/global-setup';
import { cliLoginParams, tokenRequest } from '../harness/login';
import { startNode, testRedis, type TestNode } from '../harness/node';
import { decide, h1, logIn } from './steps';

/**
 * A CLI login in a real browser (SPEC §4.6, §9; RFC 8252 with PKCE): `/sky/login?fly_port=…` ends on a
 * consent page ("Log in the sky CLI?") that shows who logs in and, for the sky CLI, the confirmation
 * code its terminal prints, and sends nothing anywhere until the person clicks "Log in the sky CLI".
 * After the click the delivery page hands the CLI's local port a single-use login code with the CLI's
 * nonce (the real sky CLI redeems it with its PKCE verifier), or a bare `?token=` to Concourse's fly;
 * when nothing listens there it shows the login code to paste, with a copy button. A page on another
 * origin that sends a logged-in browser to the consent page, or posts the click's form itself, gets
 * nothing to the port and no new refresh family.
 */
jest.setTimeout(60_000);

/** How long the delivery page tries the CLI's port (FLY_HANDOVER_TIMEOUT_MS): long enough to say "nothing came". */
const NOTHING_WITHIN_MS = 10_000;

let chromium: Browser;
let fake: FakeBitbucket;
let node: TestNode;
/** The test Redis, for counting refresh families; none on a Redis Cluster (keys spread over masters). */
let redis: ReturnType<typeof connectRedis> | undefined;
/** What each test started (servers, contexts, a CLI): closed after it, last first, pass or fail. */
let cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  chromium = await launchChromium();
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  if (!process.env['SKY_REDIS_CLUSTER']) redis = connectRedis(testRedis());
});
afterAll(async () => {
  await redis?.quit();
  await node?.close();
  await fake?.stop();
  await chromium?.close();
});
beforeEach(() => {
  fake.consentAs(null); // the fake's real consent form, clicked in the browser
});
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

/** A server of the test's own on a free 127.0.0.1 port, closed after the test. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    server.closeAllConnections();
    await closed;
  });
  return (server.address() as AddressInfo).port;
}

/** What Concourse's fly does: listen on a loopback port and take whatever arrives. */
async function listenLikeTheCli(): Promise<{ port: number; urls: string[]; received: Promise<string> }> {
  const urls: string[] = [];
  let got: (url: string) => void = () => undefined;
  const received = new Promise<string>((resolve) => (got = resolve));
  const port = await serve((req, res) => {
    urls.push(req.url ?? '');
    got(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  return { port, urls, received };
}

/** A site of someone else's: serves `html` at / on another port (another origin than the node's). */
const otherOrigin = (html: string): Promise<number> =>
  serve((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html));

interface Tab {
  page: Page;
  /** Every request the browser made, in order. */
  requests: Request[];
  /** Every address the page's frames navigated to. */
  navigated: string[];
}

/** A fresh profile (clipboard allowed on the node), recording its requests and navigations. */
async function newTab(): Promise<Tab> {
  const context: BrowserContext = await freshContext(chromium);
  cleanups.push(() => context.close());
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: node.url });
  const requests: Request[] = [];
  context.on('request', (request) => requests.push(request));
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const navigated: string[] = [];
  page.on('framenavigated', (frame) => navigated.push(frame.url()));
  return { page, requests, navigated };
}

/** The browser's requests to a port on 127.0.0.1 (the CLI's, say). */
const requestsTo = (tab: Tab, port: number): string[] =>
  tab.requests.map((r) => r.url()).filter((url) => new URL(url).host === `127.0.0.1:${port}`);

/**
 * Opens a CLI login URL in a browser without a login, grants access as alice at the fake, and checks
 * it lands on the consent page; `browserJwt` is the browser's own cookie token.
 */
async function consentAsAlice(tab: Tab, url: string): Promise<{ browserJwt: string }> {
  const { page } = tab;
  await page.goto(url);
  expect(await h1(page)).toBe('Grant access');
  const { callback } = await decide(page, 'alice', 'Grant access');
  await expectSafePage(callback);
  // The consent page may talk to its own origin only: it has nothing to send to the CLI's port.
  expect((await callback.allHeaders())['content-security-policy']).toContain("connect-src 'self';");
  expect(await h1(page)).toBe('Log in the sky CLI?');
  expect(await page.locator('.lead').textContent()).toContain('as Alice Admin (alice)');
  const cookie = (await page.context().cookies()).find((c) => c.name === 'skymarshal_auth')?.value ?? '';
  const browserJwt = decodeURIComponent(cookie).replace(/^bearer /, '');
  expect(browserJwt.split('.')).toHaveLength(3);
  return { browserJwt };
}

/** Clicks "Log in the sky CLI" and checks the delivery page that answers the form may reach `port` only. */
async function clickLogIn(page: Page, port: number): Promise<Response> {
  const answered = page.waitForResponse((r) => r.url() === `${node.url}/sky/fly`);
  await page.getByRole('button', { name: 'Log in the sky CLI' }).click();
  const delivery = await answered;
  expect(delivery.request().method()).toBe('POST');
  await expectSafePage(delivery);
  expect((await delivery.allHeaders())['content-security-policy']).toContain(
    `connect-src http://127.0.0.1:${port};`,
  );
  return delivery;
}

const sidOf = (jwt: string): unknown =>
  (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { sid?: unknown }).sid;

async function userOf(jwt: string): Promise<string> {
  const user = await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${jwt}` } });
  expect(user.status).toBe(200);
  return ((await user.json()) as { user_name: string }).user_name;
}

/** Refresh families in the node's Redis (one `rt:` key each); null on a Redis Cluster, where it is not counted. */
async function families(): Promise<number | null> {
  return redis ? (await redis.keys(`${node.prefix}rt:*`)).length : null;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts `sky -t ci login -c <node>` in-process; after the test it is made to end if it still waits. */
function startCliLogin(...args: string[]): { cli: Running; skyrc: string } {
  const skyrc = tempSkyrc();
  const cli = start(skyrc, ['-t', 'ci', 'login', '-c', node.url, ...args]);
  let ended = false;
  void cli.done.then(() => (ended = true));
  cleanups.push(async () => {
    // A failed test leaves the CLI waiting: a pasted token it cannot use ends it (and its listener).
    if (!ended) cli.stdin.write('bearer not-a-token\n');
    cli.stdin.end();
    await cli.done;
  });
  return { cli, skyrc };
}

test('the real sky CLI: the page shows its confirmation code, and after the click the CLI has its login', async () => {
  const { cli, skyrc } = startCliLogin();
  const { url, port } = await printedLoginUrl(cli);
  const printed = await waitFor(
    () => /^confirmation code: ([0-9A-Z]{4}-[0-9A-Z]{4}) /m.exec(cli.stdout.text)?.[1],
    `the confirmation code in: ${cli.stdout.text}`,
  );
  const tab = await newTab();
  const { page } = tab;
  const { browserJwt } = await consentAsAlice(tab, url);
  // The person compares the codes: the page serves the login this terminal started.
  expect(await page.locator('code#confirmation').textContent()).toBe(printed);
  expect(printed).toBe(confirmationCode(new URL(url).searchParams.get('code_challenge') ?? ''));
  await expectAccessible(page);
  await screenshot(page, 'fly-consent');
  // Nothing went to the CLI before the click: it still waits.
  expect(requestsTo(tab, port)).toEqual([]);
  expect(await Promise.race([cli.done.then(() => 'ended'), sleep(300).then(() => 'waiting')])).toBe(
    'waiting',
  );

  const before = await families();
  await clickLogIn(page, port);
  const result = await cli.done;
  expect(result).toMatchObject({ code: 0, stderr: '' });
  expect(result.stdout).toContain('target saved');
  // One request to the CLI's port: the login code and the CLI's nonce, never a token.
  const sent = requestsTo(tab, port).map((u) => new URL(u));
  expect(sent).toHaveLength(1);
  expect([...(sent[0]?.searchParams.keys() ?? [])]).toEqual(['code', 'nonce']);
  const code = sent[0]?.searchParams.get('code') ?? '';
  expect(sent[0]?.searchParams.get('nonce')).toBe(new URL(url).searchParams.get('nonce'));

  await page.getByRole('heading', { name: 'You are logged in' }).waitFor();
  expect(await page.locator('#detail').textContent()).toContain('Return to your terminal');
  expect(await page.locator('#manual').isHidden()).toBe(true);
  // The saved target: a token of the CLI's own login for alice, and a refresh token that works.
  const target = readSkyrc(skyrc).targets['ci'];
  expect(target).toMatchObject({ api: node.url, team: 'main', token: { type: 'bearer' } });
  const jwt = target?.token?.value ?? '';
  expect(await userOf(jwt)).toBe('alice');
  expect(sidOf(jwt)).not.toBe(sidOf(browserJwt));
  expect(target?.refresh_token).toEqual(expect.any(String));
  const refreshed = await tokenRequest(node.url, {
    grant_type: 'refresh_token',
    refresh_token: target?.refresh_token ?? '',
  });
  expect(refreshed.status).toBe(200);
  // One new refresh family: the CLI's, made when it redeemed the code (the click alone makes none).
  expect(await families()).toBe(before === null ? null : before + 1);
  // The code travelled in a fetch to the CLI only, never in an address the browser keeps.
  expect(tab.navigated.filter((u) => u.includes(code))).toEqual([]);
  await expectAccessible(page);
  await screenshot(page, 'fly-handed-over');
});

test('a CLI login to a team the person is not in: the page says so, as the terminal does, and nothing is saved', async () => {
  await node.putTeam('builders', { member: { users: ['bob'] } });
  const { cli, skyrc } = startCliLogin('-n', 'main');
  const { url, port } = await printedLoginUrl(cli);
  const tab = await newTab();
  const { page } = tab;
  await page.goto(url);
  await decide(page, 'bob', 'Grant access');
  expect(await h1(page)).toBe('Log in the sky CLI?');
  await clickLogIn(page, port);
  const result = await cli.done;
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("you are not a member of 'main' or the team does not exist");
  await page.getByRole('heading', { name: 'You are not logged in' }).waitFor();
  expect(await page.locator('#detail').textContent()).toBe(
    "The CLI did not save this login: you are not a member of 'main' or the team does not exist",
  );
  expect(await page.locator('#card').getAttribute('class')).toBe('card error');
  expect(await page.locator('#done-icon').isHidden()).toBe(true);
  expect(existsSync(skyrc) ? readSkyrc(skyrc).targets['ci'] : undefined).toBeUndefined();
  await expectAccessible(page);
});

describe('a page on another origin gets nothing from a browser already logged in', () => {
  /** A browser logged in to the node through the normal browser login, as alice. */
  async function loggedInTab(): Promise<Tab> {
    const tab = await newTab();
    await logIn(tab.page, node.url, 'alice', 'Alice Admin');
    // The browser's own login is a family: the count below sees families at all.
    if (redis) expect(await families()).toBeGreaterThan(0);
    return tab;
  }

  test.each([
    ['the sky CLI’s challenge and nonce', (port: number) => cliLoginParams(port).query],
    ['no challenge (fly)', (port: number) => `fly_port=${port}`],
  ])('sending it to /sky/login with %s stops at the consent page', async (_, query) => {
    const tab = await loggedInTab();
    const cli = await listenLikeTheCli();
    const login = `${node.url}/sky/login?${query(cli.port)}`;
    const site = await otherOrigin(`<!doctype html><script>location = ${JSON.stringify(login)};</script>`);
    const before = await families();
    await tab.page.goto(`http://127.0.0.1:${site}/`);
    // Logged in already: straight to the consent page, with no visit to Bitbucket.
    await tab.page.waitForURL(login);
    expect(await h1(tab.page)).toBe('Log in the sky CLI?');
    await sleep(NOTHING_WITHIN_MS);
    expect(cli.urls).toEqual([]);
    expect(requestsTo(tab, cli.port)).toEqual([]);
    expect(await families()).toBe(before);
  });

  test.each([
    // Another port of 127.0.0.1 is the same site: the Lax cookie goes along, the CSRF check refuses.
    ['another port of the same host', '127.0.0.1', true],
    // localhost is another site: the Lax cookie stays home on a cross-site POST.
    ['another site (localhost)', 'localhost', false],
  ])('posting the click’s form from %s with a made-up csrf_token is refused', async (_, host, cookieSent) => {
    const tab = await loggedInTab();
    const cli = await listenLikeTheCli();
    // The bare click: the one that would mint a token for the port straight away.
    const fields = { fly_port: String(cli.port), csrf_token: 'made-up-csrf-token' };
    const inputs = Object.entries(fields)
      .map(([name, value]) => `<input type="hidden" name="${name}" value="${value}">`)
      .join('');
    const site = await otherOrigin(
      `<!doctype html><form method="post" action="${node.url}/sky/fly">${inputs}</form>` +
        `<script>document.forms[0].submit();</script>`,
    );
    const before = await families();
    const answered = tab.page.waitForResponse((r) => r.url() === `${node.url}/sky/fly`);
    await tab.page.goto(`http://${host}:${site}/`);
    const refused = await answered;
    expect(refused.request().method()).toBe('POST');
    expect(refused.status()).toBe(401);
    const cookie = (await refused.request().allHeaders())['cookie'] ?? '';
    expect(cookie.includes('skymarshal_auth=')).toBe(cookieSent);
    await sleep(NOTHING_WITHIN_MS);
    expect(cli.urls).toEqual([]);
    expect(requestsTo(tab, cli.port)).toEqual([]);
    expect(await families()).toBe(before);
  });
});

test('Concourse’s fly (no challenge): after the click the listener gets a bare token of its own', async () => {
  const cli = await listenLikeTheCli();
  const tab = await newTab();
  const { page } = tab;
  const { browserJwt } = await consentAsAlice(tab, `${node.url}/sky/login?fly_port=${cli.port}`);
  expect(await page.locator('#confirmation').count()).toBe(0);
  expect(cli.urls).toEqual([]);
  const before = await families();
  await clickLogIn(page, cli.port);
  const received = await cli.received;
  // Exactly fly's `?token=bearer%20<jwt>`: no refresh token, nothing else.
  expect(received).toMatch(/^\/\?token=bearer%20[\w-]+\.[\w-]+\.[\w-]+$/);
  expect([...new URL(received, 'http://127.0.0.1').searchParams.keys()]).toEqual(['token']);
  const jwt = received.slice('/?token=bearer%20'.length);
  expect(await userOf(jwt)).toBe('alice');
  // A token of a login family of its own, apart from the browser's cookie and session.
  expect(jwt).not.toBe(browserJwt);
  expect(sidOf(jwt)).not.toBe(sidOf(browserJwt));
  await page.getByRole('heading', { name: 'You are logged in' }).waitFor();
  expect(cli.urls).toEqual([received]);
  // fly's token has a family id of its own but no refresh token: no refresh family is stored.
  expect(await families()).toBe(before);
  expect(tab.navigated.filter((u) => u.includes(jwt))).toEqual([]);
});

test('with nothing listening, the page shows the login code to paste and copies it; the code works once', async () => {
  const port = await freePort(); // nothing listens there
  const cli = cliLoginParams(port);
  const tab = await newTab();
  const { page } = tab;
  await consentAsAlice(tab, `${node.url}/sky/login?${cli.query}`);
  expect(await page.locator('code#confirmation').textContent()).toBe(
    confirmationCode(challengeOf(cli.verifier)),
  );
  await clickLogIn(page, port);
  await page.getByRole('heading', { name: 'Paste this into your terminal' }).waitFor();
  const handover = page.getByLabel('The login code for the CLI');
  const code = await handover.inputValue();
  expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(await handover.getAttribute('data-kind')).toBe('code');
  await page.getByRole('button', { name: 'Copy the login code' }).click();
  await page.locator('#copied', { hasText: 'Copied.' }).waitFor();
  expect(await page.evaluate<string>('navigator.clipboard.readText()')).toBe(code);
  expect(tab.navigated.filter((u) => u.includes(code))).toEqual([]);
  await expectAccessible(page);
  await screenshot(page, 'fly-manual');

  // What the CLI does with the pasted code: redeem it with its verifier, once.
  const form = { grant_type: 'authorization_code', code, code_verifier: cli.verifier };
  const redeemed = await tokenRequest(node.url, form);
  expect(redeemed.status).toBe(200);
  expect(redeemed.body).toMatchObject({
    access_token: expect.any(String),
    refresh_token: expect.any(String),
  });
  expect(await userOf(String(redeemed.body['access_token']))).toBe('alice');
  const again = await tokenRequest(node.url, form);
  expect(again.status).toBe(400);
  expect(again.body['error']).toBe('invalid_grant');
});
