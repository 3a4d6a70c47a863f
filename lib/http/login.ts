import type { NextFunction, Request, Response } from 'express';
import type { Passport } from 'passport';
import { BITBUCKET_CLOUD } from '../bitbucket';
import { SkyError } from '../errors';
import { authCookies, parseCookies } from '../tokens';
import { cookieAttributes, type Issued, type SkyContext } from './context';
import { contextOf, identityOf, presentedToken } from './guards';
import type { LoginState } from './oauth-state';
import { flySuccessPage, sendPage } from './pages';
import { safeRedirect } from './redirect';

type Authenticator = InstanceType<typeof Passport>;

function parseFlyPort(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const port = typeof raw === 'string' && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(port >= 1024 && port <= 65535)) {
    throw new SkyError('invalid_request', 'fly_port must be an integer between 1024 and 65535');
  }
  return port;
}

const saveSession = (req: Request): Promise<void> =>
  new Promise((resolve, reject) => req.session.save((err) => (err ? reject(err) : resolve())));

/**
 * Lands a login. The browser gets both cookies, and its refresh token stays sealed in the server-side
 * session; a CLI login (fly_port) ends on the fly success page with a token and refresh token of its own.
 */
async function land(
  req: Request,
  res: Response,
  state: LoginState,
  browser: Issued,
  cli?: Issued,
): Promise<void> {
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
    const handed = cli ?? browser;
    sendPage(res, 200, flySuccessPage(handed.token, state.flyPort, handed.refreshToken));
    return;
  }
  const target = new URL(state.redirect);
  target.searchParams.set('csrf_token', claims.csrf);
  // The Location carries csrf_token: no cache may keep it.
  res.set('Cache-Control', 'no-store').redirect(302, target.href);
}

/**
 * Another token of the same person with a refresh family of its own (the CLI's and the browser's never
 * share one), when the user's upstream grant is live.
 */
async function ownFamily(ctx: SkyContext, issued: Issued): Promise<Issued | undefined> {
  const family = await ctx.grants.fork(issued.claims.sub);
  return family ? ctx.issue(identityOf(issued.claims), async () => family) : undefined;
}

/** GET /sky/login (SPEC §4.1). */
export function login(passport: Authenticator) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const ctx = contextOf(req);
    const redirect = safeRedirect(req.query['redirect_uri'], ctx.config.externalUrl).href;
    const flyPort = parseFlyPort(req.query['fly_port']);
    const state: LoginState = flyPort === undefined ? { redirect } : { redirect, flyPort };
    // As Concourse: a browser that already holds a good token is not sent to Bitbucket again.
    const existing = validCookieToken(req) ?? (await renewFromSession(req));
    if (existing) {
      await land(
        req,
        res,
        state,
        existing,
        flyPort === undefined ? undefined : await ownFamily(ctx, existing),
      );
      return;
    }
    // passport-oauth2 hands an object `state` to the state store (types say string; the code says object).
    passport.authenticate(BITBUCKET_CLOUD, { session: false, state: state as unknown as string })(
      req,
      res,
      next,
    );
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
 * The browser's token expired, but its session still holds a refresh token: a new token from the
 * user's current Bitbucket identity and teams, without a trip through Bitbucket's consent. Any failure
 * forgets the session's refresh token and falls back to a full login.
 */
async function renewFromSession(req: Request): Promise<Issued | null> {
  const { skyRefresh: sealed, skySubject: sub } = req.session;
  if (!sealed || !sub) return null;
  const ctx = contextOf(req);
  try {
    const redeemed = await ctx.grants.redeem(ctx.grants.openFromSession(sealed, sub));
    return await ctx.issue(redeemed.identity, async () => redeemed);
  } catch (err) {
    ctx.log.info(
      { reqId: req.skyRequestId, sub, err: (err as Error).message },
      'session refresh failed: full login',
    );
    delete req.session.skyRefresh;
    await saveSession(req);
    return null;
  }
}

/** GET /sky/issuer/callback (SPEC §4.2). */
export function callback(passport: Authenticator) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const { error, error_description: description, code, state } = req.query;
    if (error !== undefined) {
      const reason = typeof description === 'string' && description ? description : String(error);
      throw new SkyError('access_denied', `Bitbucket Cloud did not grant access: ${reason.slice(0, 200)}`);
    }
    // Checked before passport: without a code it would quietly start a new authorization instead.
    if (typeof code !== 'string' || code === '' || typeof state !== 'string' || state === '') {
      throw new SkyError('invalid_state', 'The login callback is missing its code or state.');
    }
    const done = (err: unknown, result: Issued | false, info?: { message?: string; state?: LoginState }) => {
      if (err) return next(err);
      if (!result || !info?.state) {
        return next(
          new SkyError('invalid_state', `The login state is not valid: ${info?.message ?? 'unknown state'}.`),
        );
      }
      const landing = info.state;
      // A fresh session id at the privilege change (session fixation).
      req.session.regenerate((regenerateErr) => {
        if (regenerateErr) return next(regenerateErr);
        finish(req, res, landing, result).catch(next);
      });
    };
    passport.authenticate(BITBUCKET_CLOUD, { session: false }, done)(req, res, next);
  };
}

/** The login's own family goes to whoever asked: the browser, or the CLI (the browser then gets a second). */
async function finish(req: Request, res: Response, state: LoginState, result: Issued): Promise<void> {
  if (state.flyPort === undefined) return land(req, res, state, result);
  const browser = (await ownFamily(contextOf(req), result)) ?? result;
  await land(req, res, state, browser, result);
}
