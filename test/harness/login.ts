import type { FakeBitbucket } from '../../lib/testing';
import { Browser } from './browser';

/** What a failed hop's page says, in one line. */
const pageTitle = (html = ''): string => /<title>([^<]*)<\/title>/.exec(html)?.[1] ?? html.slice(0, 200);

export interface LoggedIn {
  browser: Browser;
  token: string;
  csrf: string;
  /** `Authorization: Bearer <token>` as a header object. */
  bearer: { authorization: string };
}

/** Logs `user` in through the real flow (sky → fake consent → callback) and returns what a client holds. */
export async function loginAs(baseUrl: string, fake: FakeBitbucket, user: string): Promise<LoggedIn> {
  fake.consentAs(user);
  const browser = new Browser();
  const hops = await browser.follow(`${baseUrl}/sky/login`, 3);
  const landing = hops[2]?.location;
  if (hops[2]?.status !== 302 || !landing) {
    throw new Error(
      `login as ${user} failed: ${hops.map((h) => h.status).join(' → ')}: ${pageTitle(hops.at(-1)?.body)}`,
    );
  }
  const csrf = new URL(landing).searchParams.get('csrf_token') ?? '';
  const token = decodeURIComponent(browser.jar.get('skymarshal_auth') ?? '').slice('bearer '.length);
  return { browser, token, csrf, bearer: { authorization: `Bearer ${token}` } };
}

/** The fly success page of a CLI login, as the CLI's browser sees it. */
export interface SuccessPage {
  html: string;
  /** The textarea's content: "bearer <jwt>". */
  token: string;
  /** The refresh token the page sends along with the token, when it has one. */
  refreshToken: string | null;
}

/** Plays the browser of a CLI login: follows `url` (…/sky/login?fly_port=…) through consent to the fly page. */
export async function followFlyLogin(url: string, fake: FakeBitbucket, user: string): Promise<SuccessPage> {
  fake.consentAs(user);
  const hops = await new Browser().follow(url);
  const last = hops.at(-1);
  if (last?.status !== 200) {
    throw new Error(
      `login as ${user} ended with ${hops.map((h) => h.status).join(' → ')}: ${pageTitle(last?.body)}`,
    );
  }
  const token = /<textarea id="token"[^>]*>([^<]*)<\/textarea>/.exec(last.body)?.[1];
  if (!token) throw new Error(`no token on the fly success page: ${last.body}`);
  // The page's script sends the textarea's data-refresh-token along with the token.
  const refresh = /<textarea id="token"[^>]* data-refresh-token="([^"]+)"/.exec(last.body);
  return { html: last.body, token, refreshToken: refresh?.[1] ?? null };
}

/** A CLI's credentials for `user`: the JWT and refresh token a fly-style login hands over. */
export async function cliLoginAs(
  baseUrl: string,
  fake: FakeBitbucket,
  user: string,
): Promise<{ token: string; refreshToken: string; bearer: { authorization: string } }> {
  const page = await followFlyLogin(`${baseUrl}/sky/login?fly_port=65000`, fake, user);
  if (!page.refreshToken) throw new Error(`the fly page gave ${user} no refresh token`);
  const token = page.token.slice('bearer '.length);
  return { token, refreshToken: page.refreshToken, bearer: { authorization: `Bearer ${token}` } };
}
