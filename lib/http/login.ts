import type { NextFunction, Request, Response } from 'express';
import type { Passport } from 'passport';
import type { Connector, LoggedIn } from '../connector';
import { personActor } from '../audit/trail';
import { SkyError } from '../errors';
import { authCookies, parseCookies } from '../tokens';
import { subjectOf } from '../tokens/jwt';
import { CODE_CHALLENGE, NONCE, confirmationCode } from '../tokens/pkce';
import { cookieAttributes, type Issued } from './context';
import { actingIdentity, authenticate, contextOf, presentedToken } from './guards';
import type { LoginState, LoginStateCookies } from './login-state';
import { flyConsentPage, flyDeliveryPage, loginPage, sendPage, type LoginChoice } from './pages';
import { checkPasswordBudget, countPasswordFailure } from './rate-limit';
import { safeRedirect } from './redirect';

type Authenticator = InstanceType<typeof Passport>;
/** What passport.authenticate returns (its typings say any). */
type Handler = (req: Request, res: Response, next: NextFunction) => void;

/** A landing URL longer than this would not fit the sealed login cookie (browsers keep ~4 KB a cookie). */
const MAX_REDIRECT_LENGTH = 2048;

function parseFlyPort(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const port = typeof raw === 'string' && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(port >= 1024 && port <= 65535)) {
    throw new SkyError('invalid_request', 'fly_port must be an integer between 1024 and 65535');
  }
  return port;
}

/**
 * The sky CLI's part of a CLI login (RFC 8252): its PKCE challenge (S256 only) and its listener's
 * nonce, both or neither; neither is Concourse's own fly, which takes a bare token.
 */
function parseCli(
  source: Record<string, unknown>,
  flyPort: number | undefined,
): LoginState['cli'] | undefined {
  const { code_challenge: challenge, code_challenge_method: method, nonce } = source;
  if (challenge === undefined && nonce === undefined && method === undefined) return undefined;
  if (flyPort === undefined) {
    throw new SkyError(
      'invalid_request',
      'code_challenge and nonce belong to a CLI login: fly_port is missing',
    );
  }
  if (method !== undefined && method !== 'S256') {
    throw new SkyError('invalid_request', 'code_challenge_method must be S256');
  }
  if (typeof challenge !== 'string' || !CODE_CHALLENGE.test(challenge)) {
    throw new SkyError('invalid_request', 'code_challenge must be 43 base64url characters (S256)');
  }
  if (typeof nonce !== 'string' || !NONCE.test(nonce)) {
    throw new SkyError('invalid_request', 'nonce must be 16 to 64 base64url characters');
  }
  return { challenge, nonce };
}

/** What a login carries to its end (from the query of GET /sky/login, or the fields of a password form). */
function loginStateOf(req: Request, source: Record<string, unknown>): LoginState {
  const ctx = contextOf(req);
  const redirect = safeRedirect(source['redirect_uri'], ctx.config.externalUrl).href;
  if (redirect.length > MAX_REDIRECT_LENGTH) {
    throw new SkyError('invalid_request', `redirect_uri is longer than ${MAX_REDIRECT_LENGTH} characters`);
  }
  const flyPort = parseFlyPort(source['fly_port']);
  const cli = parseCli(source, flyPort);
  return { redirect, ...(flyPort === undefined ? {} : { flyPort }), ...(cli ? { cli } : {}) };
}

/** A login state as fields: the query of a connector's button, the hidden fields of a password form. */
function carriedFields(state: LoginState): Record<string, string> {
  return {
    redirect_uri: state.redirect,
    ...(state.flyPort === undefined ? {} : { fly_port: String(state.flyPort) }),
    ...(state.cli
      ? { code_challenge: state.cli.challenge, code_challenge_method: 'S256', nonce: state.cli.nonce }
      : {}),
  };
}

const query = (fields: Record<string, string>): string => {
  const search = new URLSearchParams(fields).toString();
  return search === '' ? '' : `?${search}`;
};

/** Every enabled connector as the login page offers it, each carrying the login's state. */
export function loginChoices(
  connectors: readonly Connector[],
  base: string,
  carry: Record<string, string>,
): LoginChoice[] {
  return connectors.map((c) =>
    c.login === 'password'
      ? { name: c.displayName, login: c.login, url: `${base}/sky/login/${c.id}` }
      : {
          name: c.displayName,
          login: c.login,
          // The only connector needs no naming: /sky/login goes straight to it.
          url: `${base}/sky/login${query(connectors.length === 1 ? carry : { connector: c.id, ...carry })}`,
        },
  );
}

const saveSession = (req: Request): Promise<void> =>
  new Promise((resolve, reject) => req.session.save((err) => (err ? reject(asError(err)) : resolve())));

const regenerateSession = (req: Request): Promise<void> =>
  new Promise((resolve, reject) => req.session.regenerate((err) => (err ? reject(asError(err)) : resolve())));

/** express-session's callbacks type their error as any. */
const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/**
 * Lands a browser login: both cookies, and the refresh token sealed in the server-side session. A CLI
 * login then asks the person whether to log the CLI in; nothing leaves the browser before that click.
 */
async function land(req: Request, res: Response, state: LoginState, browser: Issued): Promise<void> {
  const ctx = contextOf(req);
  const { claims } = browser;
  if (browser.refreshToken) {
    req.session.skySubject = claims.sub;
    req.session.skyRefresh = ctx.grants.sealForSession(browser.refreshToken, claims.sub);
    await saveSession(req);
    await ctx.grants.rememberSession(claims.sub, req.session.id);
  }
  const attrs = { ...cookieAttributes(ctx.config), expires: new Date(claims.exp * 1000) };
  res.append('Set-Cookie', authCookies(browser.token, claims.csrf, attrs, parseCookies(req.headers.cookie)));
  if (state.flyPort !== undefined) {
    sendPage(
      res,
      200,
      flyConsentPage({
        name: claims.name,
        account: claims.user_name || claims.user_id,
        flyPort: state.flyPort,
        csrf: claims.csrf,
        actionUrl: `${ctx.config.externalUrl}/sky/fly`,
        ...(state.cli ? { cli: { ...state.cli, confirmation: confirmationCode(state.cli.challenge) } } : {}),
      }),
    );
    return;
  }
  const target = new URL(state.redirect);
  target.searchParams.set('csrf_token', claims.csrf);
  // The Location carries csrf_token: no cache may keep it.
  res.set('Cache-Control', 'no-store').redirect(302, target.href);
}

/**
 * GET /sky/login (SPEC §4.1). With one redirecting connector (Bitbucket Cloud alone) the browser goes
 * straight to it; with several, or a password connector, the login page lists them; `connector=<id>`
 * picks one.
 */
export function login(passport: Authenticator, states: LoginStateCookies) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const ctx = contextOf(req);
    const state = loginStateOf(req, req.query);
    const chosen = chosenConnector(ctx.connectors, req.query['connector']);
    // passport-oauth2 would take a request with these for its callback leg, and answer on its own.
    for (const name of ['code', 'error']) {
      if (Object.hasOwn(req.query, name)) {
        throw new SkyError('invalid_request', `${name} belongs to the login callback, not to /sky/login`);
      }
    }
    // As Concourse: a browser that already holds a good token is not sent to Bitbucket again.
    const existing = validCookieToken(req) ?? (await renewFromSession(req));
    if (existing) return land(req, res, state, existing);
    if (!chosen || chosen.login === 'password') {
      const offered = chosen ? [chosen] : ctx.connectors;
      const carry = carriedFields(state);
      sendPage(res, 200, loginPage({ choices: loginChoices(offered, ctx.config.externalUrl, carry), carry }));
      return;
    }
    // The state store (login-state.ts) keeps what this login carries; passport-oauth2 asks it for a handle.
    states.begin(req, state);
    (passport.authenticate(chosen.id, { session: false }) as Handler)(req, res, next);
  };
}

/** The connector `connector=<id>` names, the only one when a single redirecting one is enabled, or none. */
function chosenConnector(connectors: readonly Connector[], named: unknown): Connector | undefined {
  if (named === undefined) {
    const [only] = connectors;
    return connectors.length === 1 && only?.login === 'redirect' ? only : undefined;
  }
  const found = typeof named === 'string' ? connectors.find((c) => c.id === named) : undefined;
  if (!found) {
    throw new SkyError(
      'invalid_request',
      `connector must be one of ${connectors.map((c) => c.id).join(', ')} (the connectors of this CI server)`,
    );
  }
  return found;
}

/** The one answer to any refused password, whatever was wrong (SPEC: no telling a missing user from a wrong password). */
export const WRONG_PASSWORD = 'Wrong username or password.';

/**
 * A password form was posted from another site: a login CSRF (the browser would be logged in as the
 * sender's user). Browsers name the sending origin on every cross-site POST.
 */
function refuseCrossSite(req: Request): void {
  const site = req.headers['sec-fetch-site'];
  const origin = req.headers.origin;
  // Fetch Metadata first: sky's pages send no referrer, so a browser's Origin on their form posts is
  // "null", while Sec-Fetch-Site still says same-origin. Without it (an older browser), the Origin.
  const crossSite =
    site !== undefined
      ? site !== 'same-origin' && site !== 'none'
      : origin !== undefined && origin !== new URL(contextOf(req).config.externalUrl).origin;
  if (crossSite) {
    throw new SkyError(
      'forbidden',
      'This login form was sent from another site: log in from this CI server’s own page.',
    );
  }
}

/**
 * POST /sky/login/:connector: a password connector's form (username, password and the login's state as
 * hidden fields). A refusal is one answer for every cause, counted per address (the login limit) and
 * per username; the password reaches no log.
 */
export function passwordLogin(passport: Authenticator) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const ctx = contextOf(req);
    refuseCrossSite(req);
    const connector = ctx.connectors.find((c) => c.login === 'password' && c.id === req.params['connector']);
    if (!connector) throw new SkyError('not_found', 'No such login form on this CI server.');
    if (!req.is('application/x-www-form-urlencoded')) {
      throw new SkyError(
        'invalid_request',
        'Send the login form as application/x-www-form-urlencoded, as the login page does.',
      );
    }
    const body = (req.body ?? {}) as Record<string, unknown>;
    const state = loginStateOf(req, body);
    const username = typeof body['username'] === 'string' ? body['username'] : '';
    await checkPasswordBudget(req, connector.id, username);
    const refused = async (): Promise<void> => {
      await countPasswordFailure(req, connector.id, username);
      ctx.log.info({ reqId: req.skyRequestId, connector: connector.id }, 'password login refused');
      const carry = carriedFields(state);
      sendPage(
        res,
        401,
        loginPage({
          choices: loginChoices([connector], ctx.config.externalUrl, carry),
          carry,
          problem: WRONG_PASSWORD,
        }),
      );
    };
    const done = (err: unknown, loggedIn: LoggedIn | false): void => {
      if (err) return next(err);
      if (!loggedIn) return void refused().catch(next);
      issueAndLand(req, res, next, loggedIn, state);
    };
    (passport.authenticate(connector.id, { session: false }, done) as Handler)(req, res, next);
  };
}

function validCookieToken(req: Request): Issued | null {
  const presented = presentedToken(req);
  if (!presented?.viaCookie) return null;
  const ctx = contextOf(req);
  try {
    const claims = ctx.verifier.verify(presented.token);
    return ctx.revocations.isRevoked(claims) ? null : { token: presented.token, claims };
  } catch {
    return null;
  }
}

/**
 * The browser's token expired, but its session still holds a refresh token: a new token of the same
 * login family from the user's current Bitbucket identity and teams, without Bitbucket's consent. The
 * session gets a new id (a planted session id is worth nothing afterwards) and must belong to the
 * person the renewal issues for. Any failure forgets the session's refresh token: a full login follows.
 */
async function renewFromSession(req: Request): Promise<Issued | null> {
  const { skyRefresh: sealed, skySubject: sub } = req.session;
  if (!sealed || !sub) return null;
  const ctx = contextOf(req);
  try {
    const redeemed = await ctx.grants.redeem(ctx.grants.openFromSession(sealed, sub));
    if (subjectOf(redeemed.identity) !== sub) {
      throw new SkyError('invalid_grant', 'the session belongs to another user');
    }
    const issued = await ctx.issue(redeemed.identity, redeemed.family, true);
    await regenerateSession(req);
    ctx.metrics.refreshes.inc({ result: 'issued' });
    return issued;
  } catch (err) {
    ctx.metrics.refreshes.inc({ result: 'refused' });
    ctx.log.info(
      { reqId: req.skyRequestId, sub, err: (err as Error).message },
      'session refresh failed: full login',
    );
    delete req.session.skyRefresh;
    await saveSession(req);
    return null;
  }
}

/** What each OAuth 2.0 `error` code of an authorization response means (RFC 6749 §4.1.2.1), in sky's words. */
const CALLBACK_ERRORS: Record<string, (provider: string) => string> = {
  access_denied: (p) => `You did not grant this CI server access to your ${p} account.`,
  invalid_scope: (p) => `${p} refused the permissions this CI server asks for (account and email).`,
  invalid_request: (p) => `${p} refused the login request as malformed.`,
  unauthorized_client: (p) => `${p} does not allow this CI server’s OAuth consumer to log people in.`,
  unsupported_response_type: (p) => `${p} does not support the kind of login this CI server asked for.`,
  server_error: (p) => `${p} failed while it handled the login.`,
  temporarily_unavailable: (p) => `${p} cannot handle logins right now.`,
};

/**
 * The known sentence about `provider` (the redirecting connector's name), or the code named (never the
 * query's free text: it is anybody's to write).
 */
export function callbackErrorMessage(error: unknown, provider: string): string {
  const known =
    typeof error === 'string' && Object.hasOwn(CALLBACK_ERRORS, error) ? CALLBACK_ERRORS[error] : undefined;
  if (known) return known(provider);
  const named = typeof error === 'string' && /^[A-Za-z0-9_.-]{1,40}$/.test(error);
  return named
    ? `${provider} ended the login with the error code '${error}', which this CI server does not know.`
    : `${provider} ended the login with an error code this CI server does not know.`;
}

/**
 * A strategy logged the person in: a token of a new family, a fresh session id at the privilege change
 * (session fixation), then the landing.
 */
function issueAndLand(
  req: Request,
  res: Response,
  next: NextFunction,
  loggedIn: LoggedIn,
  state: LoginState,
): void {
  const ctx = contextOf(req);
  ctx
    .issue(loggedIn.identity, () => ctx.grants.start(loggedIn.identity, loggedIn.upstream), true)
    .then((issued) => {
      ctx.metrics.logins.inc({ connector: loggedIn.identity.connector });
      return ctx.audit
        .record({ action: 'login.success', actor: personActor(issued.claims), requestId: req.skyRequestId })
        .then(() =>
          req.session.regenerate((regenerateErr) => {
            if (regenerateErr) return next(regenerateErr);
            land(req, res, state, issued).catch(next);
          }),
        );
    }, next);
}

/** GET /sky/issuer/callback (SPEC §4.2). */
export function callback(passport: Authenticator, states: LoginStateCookies) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const { error, code, state } = req.query;
    const ctx = contextOf(req);
    // The callback URL registered upstream is the redirecting connector's (Bitbucket Cloud's).
    const connector = ctx.connectors.find((c) => c.login === 'redirect');
    if (!connector)
      throw new SkyError('not_found', 'No connector of this CI server logs in through a callback.');
    if (error !== undefined) {
      states.forget(req, state);
      throw new SkyError('access_denied', callbackErrorMessage(error, connector.displayName));
    }
    // Checked before passport: without a code it would quietly start a new authorization instead.
    if (typeof code !== 'string' || code === '' || typeof state !== 'string' || state === '') {
      throw new SkyError('invalid_state', 'The login callback is missing its code or state.');
    }
    const done = (
      err: unknown,
      loggedIn: LoggedIn | false,
      info?: { message?: string; state?: LoginState },
    ) => {
      if (err) return next(err);
      if (!loggedIn || !info?.state) {
        return next(
          new SkyError(
            'invalid_state',
            info?.message ?? 'This login cannot be continued. Start the login again.',
          ),
        );
      }
      issueAndLand(req, res, next, loggedIn, info.state);
    };
    (passport.authenticate(connector.id, { session: false }, done) as Handler)(req, res, next);
  };
}

/**
 * POST /sky/fly: the person clicked "Log in the sky CLI" (a form with the CSRF field, so no other site
 * can click it). The sky CLI gets a single-use authorization code that only its verifier redeems;
 * Concourse's fly gets a token of a family of its own.
 */
export async function flyConsent(req: Request, res: Response): Promise<void> {
  const claims = authenticate(req);
  const ctx = contextOf(req);
  const body = (req.body ?? {}) as Record<string, unknown>;
  const flyPort = parseFlyPort(body['fly_port']);
  if (flyPort === undefined) throw new SkyError('invalid_request', 'fly_port is missing');
  const cli = parseCli(body, flyPort);
  const identity = await actingIdentity(ctx, claims);
  if (cli) {
    const code = await ctx.grants.authorize(identity, cli.challenge);
    ctx.log.info({ reqId: req.skyRequestId, sub: claims.sub }, 'CLI login authorized');
    sendPage(res, 200, flyDeliveryPage({ flyPort, code, nonce: cli.nonce }));
    return;
  }
  const issued = await ctx.issue(identity, async () => ctx.grants.loneFamily());
  ctx.log.info({ reqId: req.skyRequestId, sub: claims.sub, jti: issued.claims.jti }, 'fly token issued');
  sendPage(res, 200, flyDeliveryPage({ flyPort, token: issued.token }));
}
