import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { consentPage, errorPage } from '../pages';
import { basicCredentials, newToken, sendJson, sendOAuthError, sendPage } from './http';
import type { AuthorizationCode, Decision, FakeState, Grant } from './state';

/** The fake's OAuth 2.0 server (SPEC §5.1): authorize with consent, codes with PKCE, rotating refresh. */

const CODE_TTL_MS = 10 * 60_000;
const SCOPES = 'account email';

/** Bitbucket accepts a redirect_uri equal to the registered callback URL or below it. */
function isBelowCallback(redirect: URL, callbackUrl: string): boolean {
  if (redirect.href === callbackUrl) return true;
  const callback = new URL(callbackUrl);
  const base = callback.pathname.endsWith('/') ? callback.pathname : `${callback.pathname}/`;
  return (
    redirect.origin === callback.origin &&
    (redirect.pathname === callback.pathname || redirect.pathname.startsWith(base))
  );
}

function parseRedirect(raw: string): URL | null {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : null;
  } catch {
    return null;
  }
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

function postedDecision(form: URLSearchParams): Decision {
  return form.get('decision') === 'grant' ? { as: form.get('user') ?? '' } : 'deny';
}

function issueCode(state: FakeState, user: string, client: string, params: URLSearchParams): string {
  const code = randomBytes(16).toString('hex');
  state.codes.set(code, {
    user,
    client,
    redirectUri: params.get('redirect_uri'),
    challenge: params.get('code_challenge'),
    expiresAt: Date.now() + CODE_TTL_MS,
  });
  return code;
}

/** GET (or the consent form's POST) /site/oauth2/authorize. */
export function authorize(
  state: FakeState,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  body: string,
): void {
  const params = req.method === 'POST' ? new URLSearchParams(body) : url.searchParams;
  const client = state.clients.find((c) => c.id === params.get('client_id'));
  if (!client)
    return sendPage(res, 400, errorPage('Invalid client', 'No OAuth consumer has this client_id.'));
  if (params.get('response_type') !== 'code')
    return sendPage(res, 400, errorPage('Invalid request', 'response_type must be code.'));
  const back = parseRedirect(params.get('redirect_uri') ?? client.callbackUrl ?? '');
  if (!back || (client.callbackUrl !== undefined && !isBelowCallback(back, client.callbackUrl))) {
    const message = 'The redirect_uri does not match the callback URL of the OAuth consumer.';
    return sendPage(res, 400, errorPage('Invalid redirect_uri', message));
  }
  const decision = req.method === 'POST' ? postedDecision(params) : state.decision;
  if (decision === null) return sendPage(res, 200, consentPage(params, [...state.users.values()]));
  if (decision !== 'deny' && !state.users.has(decision.as))
    return sendPage(res, 400, errorPage('Unknown user', 'Choose one of the fixture users.'));
  if (decision === 'deny') {
    back.searchParams.set('error', 'access_denied');
    back.searchParams.set('error_description', 'The user denied access.');
  } else {
    back.searchParams.set('code', issueCode(state, decision.as, client.id, params));
  }
  const oauthState = params.get('state');
  if (oauthState !== null) back.searchParams.set('state', oauthState);
  res.writeHead(302, { location: back.href }).end();
}

/** The code, once; or why it is refused. */
function redeemCode(state: FakeState, form: URLSearchParams, clientId: string): AuthorizationCode | string {
  const presented = form.get('code') ?? '';
  const code = state.codes.get(presented);
  state.codes.delete(presented);
  if (!code || code.expiresAt < Date.now() || code.client !== clientId)
    return 'Invalid, expired or used code.';
  if (code.redirectUri !== null && code.redirectUri !== form.get('redirect_uri'))
    return 'redirect_uri mismatch.';
  if (code.challenge !== null && s256(form.get('code_verifier') ?? '') !== code.challenge)
    return 'PKCE verification failed.';
  return code;
}

/** POST /site/oauth2/access_token: HTTP Basic client authentication, a code or a refresh token. */
export function token(state: FakeState, req: IncomingMessage, res: ServerResponse, body: string): void {
  const credentials = basicCredentials(req.headers.authorization);
  const client = state.clients.find((c) => c.id === credentials?.id && c.secret === credentials.secret);
  if (!client)
    return sendOAuthError(
      res,
      401,
      'invalid_client',
      'Client credentials must be sent with HTTP Basic authentication.',
    );
  const form = new URLSearchParams(body);
  const grantType = form.get('grant_type');
  let grant: Grant;
  if (grantType === 'authorization_code') {
    const found = redeemCode(state, form, client.id);
    if (typeof found === 'string') return sendOAuthError(res, 400, 'invalid_grant', found);
    grant = { user: found.user, revoked: false };
  } else if (grantType === 'refresh_token') {
    const presented = form.get('refresh_token') ?? '';
    const found = state.refreshTokens.get(presented);
    state.refreshTokens.delete(presented); // rotation: a refresh token works once
    if (!found || found.revoked) return sendOAuthError(res, 400, 'invalid_grant', 'Invalid refresh_token.');
    grant = found;
  } else {
    return sendOAuthError(
      res,
      400,
      'unsupported_grant_type',
      'grant_type must be authorization_code or refresh_token.',
    );
  }
  const access = newToken();
  const refresh = newToken();
  state.accessTokens.set(access, { grant, expiresAt: Date.now() + state.ttlSeconds * 1000 });
  state.refreshTokens.set(refresh, grant);
  sendJson(res, 200, {
    access_token: access,
    token_type: 'bearer',
    expires_in: state.tokenStyle.expiresInAsString ? String(state.ttlSeconds) : state.ttlSeconds,
    refresh_token: refresh,
    [state.tokenStyle.scopeField]: SCOPES,
    state: grantType, // Bitbucket echoes the grant type here
  });
}
