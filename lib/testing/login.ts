import { Browser } from './browser';
import type { FakeBitbucket } from './fake-bitbucket';

/** What a failed hop's page says, in one line. */
export const pageTitle = (html = ''): string =>
  /<title>([^<]*)<\/title>/.exec(html)?.[1] ?? html.slice(0, 200);

/** What a logged-in client holds. */
export interface LoggedIn {
  /** The browser that logged in: its cookie jar holds the token cookies and the session. */
  browser: Browser;
  /** The JWT. */
  token: string;
  /** The CSRF token a cookie-authenticated write sends as `X-Csrf-Token`. */
  csrf: string;
  /** `Authorization: Bearer <token>` as a header object. */
  bearer: { authorization: string };
}

/**
 * For a host app's tests: logs `user` (a fixture user of the fake) in through the real flow — sky's
 * login, the fake's consent, the callback — and returns what a client holds, so no test writes its own
 * redirect loop or cookie jar. `baseUrl` is the external URL sky is mounted at. With `pick`, the login
 * names the Bitbucket Cloud connector (a node that offers several connectors shows a page otherwise).
 */
export async function loginAs(
  baseUrl: string,
  fake: FakeBitbucket,
  user: string,
  { pick = false }: { pick?: boolean } = {},
): Promise<LoggedIn> {
  fake.consentAs(user);
  const browser = new Browser();
  const hops = await browser.follow(`${baseUrl}/sky/login${pick ? '?connector=bitbucket-cloud' : ''}`, 3);
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
