import type { FakeBitbucket } from '../../lib/testing';
import { Browser } from './browser';

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
      `login as ${user} failed: ${hops.map((h) => h.status).join(' → ')} ${hops.at(-1)?.body ?? ''}`,
    );
  }
  const csrf = new URL(landing).searchParams.get('csrf_token') ?? '';
  const token = decodeURIComponent(browser.jar.get('skymarshal_auth') ?? '').slice('bearer '.length);
  return { browser, token, csrf, bearer: { authorization: `Bearer ${token}` } };
}
