import type { FakeBitbucket } from '../../lib/testing';
import { challengeOf, newNonce, newVerifier } from '../../lib/tokens/pkce';
import { Browser } from './browser';

import { pageTitle } from '../../lib/testing/login';

export { loginAs, type LoggedIn } from '../../lib/testing/login';

/** The fly page of a CLI login: who logs in, and the form whose button the person clicks. */
export interface FlyPage {
  browser: Browser;
  html: string;
  /** The form's action (POST /sky/fly) and its hidden fields, as the browser would send them. */
  action: string;
  fields: Record<string, string>;
}

function formOf(html: string): { action: string; fields: Record<string, string> } {
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  if (!action) throw new Error(`no form on the page: ${pageTitle(html)}`);
  const fields: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields[m[1] ?? ''] = (m[2] ?? '').replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)));
  }
  return { action: action.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c))), fields };
}

/** Plays the browser of a CLI login: follows `url` (…/sky/login?fly_port=…) through consent to the fly page. */
export async function followFlyLogin(
  url: string,
  fake: FakeBitbucket,
  user: string,
  browser = new Browser(),
): Promise<FlyPage> {
  fake.consentAs(user);
  const hops = await browser.follow(url);
  const last = hops.at(-1);
  if (last?.status !== 200) {
    throw new Error(
      `login as ${user} ended with ${hops.map((h) => h.status).join(' → ')}: ${pageTitle(last?.body)}`,
    );
  }
  return { browser, html: last.body, ...formOf(last.body) };
}

/** What the page hands the CLI after the click: a login code (sky CLI) or a bare token (fly). */
export interface Delivery {
  html: string;
  kind: 'code' | 'token';
  /** The code, or "bearer <jwt>". */
  value: string;
}

/** Clicks "Log in the sky CLI": posts the page's form, as the browser would. */
export async function approveFly(page: FlyPage): Promise<Delivery> {
  const hop = await page.browser.request(page.action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(page.fields).toString(),
  });
  if (hop.status !== 200) throw new Error(`the click was answered ${hop.status}: ${pageTitle(hop.body)}`);
  const m = /<textarea id="handover"[^>]* data-kind="(code|token)">([^<]*)<\/textarea>/.exec(hop.body);
  if (!m) throw new Error(`nothing to hand over on the page: ${hop.body}`);
  return { html: hop.body, kind: m[1] as 'code' | 'token', value: m[2] ?? '' };
}

/** The sky CLI's side of a login: a PKCE verifier, its challenge and the listener's nonce. */
export function cliLoginParams(port = 65000): { verifier: string; nonce: string; query: string } {
  const verifier = newVerifier();
  const nonce = newNonce();
  const query = new URLSearchParams({
    fly_port: String(port),
    code_challenge: challengeOf(verifier),
    code_challenge_method: 'S256',
    nonce,
  }).toString();
  return { verifier, nonce, query };
}

/** POST /sky/token with a form body; the status and the JSON answer. */
export async function tokenRequest(
  baseUrl: string,
  form: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${baseUrl}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

/** A CLI's credentials for `user`: the whole sky CLI login (page, click, code, redemption with the verifier). */
export async function cliLoginAs(
  baseUrl: string,
  fake: FakeBitbucket,
  user: string,
  browser = new Browser(),
): Promise<{ token: string; refreshToken: string; bearer: { authorization: string } }> {
  const cli = cliLoginParams();
  const page = await followFlyLogin(`${baseUrl}/sky/login?${cli.query}`, fake, user, browser);
  const delivery = await approveFly(page);
  const answer = await tokenRequest(baseUrl, {
    grant_type: 'authorization_code',
    code: delivery.value,
    code_verifier: cli.verifier,
  });
  const token = answer.body['access_token'];
  const refreshToken = answer.body['refresh_token'];
  if (typeof token !== 'string' || typeof refreshToken !== 'string') {
    throw new Error(`the code of ${user}'s CLI login was not redeemed: ${JSON.stringify(answer)}`);
  }
  return { token, refreshToken, bearer: { authorization: `Bearer ${token}` } };
}
