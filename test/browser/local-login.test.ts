import type { Browser, BrowserContext } from 'playwright-core';
import { FakeBitbucket } from '../../lib/testing';
import { expectAccessible, freshContext, launchChromium, screenshot } from '../harness/chromium';
import { startNode, type TestNode } from '../harness/node';
import { h1 } from './steps';

/**
 * Local users in Chromium (issue #16): with Bitbucket Cloud answering 503 to everything, an admin logs in
 * with the login page's username/password form, lands on the start page as admin, and changes a team
 * from the page's origin; a wrong password gets the same page back with the refusal.
 */
jest.setTimeout(60_000);

let chromium: Browser;
let fake: FakeBitbucket;
let node: TestNode;
let context: BrowserContext | undefined;

beforeAll(async () => {
  chromium = await launchChromium();
  fake = await FakeBitbucket.start();
  node = await startNode({
    fake,
    options: { localUsers: ['admin:break-glass-42'], mainTeam: { users: ['alice'], localUsers: ['admin'] } },
  });
});
afterAll(async () => {
  await context?.close();
  await node?.close();
  await fake?.stop();
  await chromium?.close();
});

test('Bitbucket down: a local admin logs in through the form and changes a team; a wrong password is refused', async () => {
  fake.addFault({ status: 503, match: 'all' });
  context = await freshContext(chromium);
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);

  await page.goto(`${node.url}/sky/login`);
  expect(await h1(page)).toBe('Log in');
  await expectAccessible(page);
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill('wrong password');
  await page.getByRole('button', { name: 'Log in with a local user' }).click();
  await page.waitForLoadState();
  expect(await page.getByRole('alert').textContent()).toBe('Wrong username or password.');

  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill('break-glass-42');
  await page.getByRole('button', { name: 'Log in with a local user' }).click();
  await page.waitForURL(`${node.url}/`);
  expect(await h1(page)).toBe('Hello, admin');
  await screenshot(page, 'local-login');

  // The page's own origin, with the cookie and the CSRF token the landing keeps: a team write as admin.
  const status = await page.evaluate<number>(`(async () => {
    const csrf = sessionStorage.getItem('sky.csrf_token') || '';
    const res = await fetch('/api/v1/teams/break-glass', {
      method: 'PUT',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify({ auth: { owner: { users: ['local:admin'] } } }),
    });
    return res.status;
  })()`);
  expect(status).toBe(201);
});
