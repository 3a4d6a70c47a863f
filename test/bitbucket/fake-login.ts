import { clientBasic, oauthUrls, tokenAnswer, tokenRefusal } from '../../lib/bitbucket/client';
import type { UpstreamTokens } from '../../lib/connector';
import type { FakeBitbucket } from '../../lib/testing';

/** Where the fake sends the browser back; nothing listens there, the tests read the Location only. */
export const CALLBACK = 'http://127.0.0.1:9/sky/issuer/callback';

/** Walks the fake's consent screen as `user` and returns the code it hands to the callback. */
export async function codeFor(
  fake: FakeBitbucket,
  user: string,
  extra: Record<string, string> = {},
): Promise<string> {
  fake.consentAs(user);
  const query = new URLSearchParams({
    client_id: fake.client.id,
    response_type: 'code',
    redirect_uri: CALLBACK,
    state: 'x',
    ...extra,
  });
  const res = await fetch(`${fake.webUrl}/site/oauth2/authorize?${query}`, { redirect: 'manual' });
  const code = new URL(res.headers.get('location') ?? 'http://none/').searchParams.get('code');
  if (res.status !== 302 || !code) throw new Error(`the fake gave no code for ${user} (${res.status})`);
  return code;
}

/**
 * The code exchange as a client makes it (HTTP Basic, as Bitbucket asks), read as sky reads it. sky's own
 * exchange is BitbucketStrategy's (passport-oauth2); this one is for tests and the dex-style benchmark.
 */
export async function exchangeCode(
  fake: FakeBitbucket,
  code: string,
  redirectUri: string = CALLBACK,
  verifier?: string,
): Promise<UpstreamTokens> {
  const form = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri });
  if (verifier) form.set('code_verifier', verifier);
  const res = await fetch(oauthUrls(fake).token, {
    method: 'POST',
    headers: {
      authorization: clientBasic({ clientId: fake.client.id, clientSecret: fake.client.secret }),
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: form,
  });
  const body: unknown = await res.json().catch(() => null);
  if (res.status !== 200) throw tokenRefusal(res.status, body, 'invalid_grant');
  return tokenAnswer(body);
}

/** A fresh grant for `user`: what a login leaves behind. */
export async function tokensFor(fake: FakeBitbucket, user: string): Promise<UpstreamTokens> {
  return exchangeCode(fake, await codeFor(fake, user));
}

/** The rejection of `promise`, so a test can assert on its code, status and message together. */
export async function failureOf(promise: Promise<unknown>): Promise<{
  code: string;
  status: number;
  message: string;
}> {
  try {
    await promise;
  } catch (err) {
    return err as { code: string; status: number; message: string };
  }
  throw new Error('expected a failure, got a result');
}
