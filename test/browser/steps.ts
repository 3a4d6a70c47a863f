import type { Page, Response } from 'playwright-core';

/**
 * The steps of a browser login, each checking where it landed and failing with the step's name, so a
 * broken step (a wrong callback URL, a missing button) stops the test at that step.
 */

export async function h1(page: Page): Promise<string> {
  return ((await page.locator('h1').first().textContent()) ?? '').trim();
}

/** Fails with what the page shows instead of `expected`. */
async function expectHeading(page: Page, step: string, expected: string | RegExp): Promise<void> {
  const seen = await h1(page);
  const ok = typeof expected === 'string' ? seen === expected : expected.test(seen);
  if (!ok) throw new Error(`step "${step}" stopped at ${page.url()}: the page says "${seen}"`);
}

/** Opens the node, checks it offers the login, and follows "Log in with Bitbucket Cloud" to the consent page. */
export async function startLogin(page: Page, nodeUrl: string): Promise<Response> {
  const home = await page.goto(`${nodeUrl}/`);
  if (!home) throw new Error(`step "open the node" got no response from ${nodeUrl}/`);
  await expectHeading(page, 'open the node', 'Log in');
  await page.getByRole('link', { name: 'Log in with Bitbucket Cloud' }).click();
  await page.waitForURL((url) => url.pathname === '/site/oauth2/authorize');
  await expectHeading(page, 'consent at Bitbucket Cloud', 'Grant access');
  return home;
}

export interface Decision {
  /** The answer of sky's callback: a 302 on success, the error page otherwise. */
  callback: Response;
  /** The callback URL the fake sent the browser to (code and state included). */
  callbackUrl: string;
}

/** Chooses a fixture user on the consent page and presses a button; resolves once the callback answered. */
export async function decide(page: Page, user: string, button: 'Grant access' | 'Deny'): Promise<Decision> {
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/sky/issuer/callback'));
  await page.getByLabel('Log in as').selectOption(user);
  await page.getByRole('button', { name: button }).click();
  const callback = await answered;
  await page.waitForLoadState('load');
  return { callback, callbackUrl: callback.url() };
}

export interface Landed extends Decision {
  /** The landing page's response (its URL still carries csrf_token). */
  landing: Response;
}

/** Grants access as `user` and checks the browser ends on the landing page greeting them. */
export async function grantAndLand(page: Page, nodeUrl: string, user: string, name: string): Promise<Landed> {
  const landed = page.waitForResponse((r) => r.url().startsWith(`${nodeUrl}/?csrf_token=`));
  const decision = await decide(page, user, 'Grant access');
  if (decision.callback.status() !== 302) {
    await expectHeading(page, 'callback', `Hello, ${name}`);
  }
  const landing = await landed;
  await page.waitForLoadState('load');
  await expectHeading(page, 'land on the teams', `Hello, ${name}`);
  return { ...decision, landing };
}

/** The whole browser login, as a person does it. */
export async function logIn(page: Page, nodeUrl: string, user: string, name: string): Promise<Landed> {
  await startLogin(page, nodeUrl);
  return grantAndLand(page, nodeUrl, user, name);
}
