import type { NextFunction, Request, Response } from 'express';
import type { Passport } from 'passport';
import { BITBUCKET_CLOUD } from '../bitbucket';
import { SkyError } from '../errors';
import { authCookies, parseCookies, type SkyClaims } from '../tokens';
import { cookieAttributes } from './context';
import { contextOf, presentedToken } from './guards';
import type { LoginState } from './oauth-state';
import { flySuccessPage, sendPage } from './pages';
import { safeRedirect } from './redirect';

type Authenticator = InstanceType<typeof Passport>;

/** What the strategy's verify step hands to the callback: the issued sky token. */
export interface LoginResult {
  token: string;
  claims: SkyClaims;
}

function parseFlyPort(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const port = typeof raw === 'string' && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(port >= 1024 && port <= 65535)) {
    throw new SkyError('invalid_request', 'fly_port must be an integer between 1024 and 65535');
  }
  return port;
}

/** Sets both cookies and lands: on the fly success page for a CLI login, else on the redirect with csrf_token. */
function land(req: Request, res: Response, result: LoginResult, state: LoginState): void {
  const attrs = { ...cookieAttributes(contextOf(req).config), expires: new Date(result.claims.exp * 1000) };
  res.append(
    'Set-Cookie',
    authCookies(result.token, result.claims.csrf, attrs, parseCookies(req.headers.cookie)),
  );
  if (state.flyPort !== undefined) {
    sendPage(res, 200, flySuccessPage(result.token, state.flyPort));
    return;
  }
  const target = new URL(state.redirect);
  target.searchParams.set('csrf_token', result.claims.csrf);
  // The Location carries csrf_token: no cache may keep it.
  res.set('Cache-Control', 'no-store').redirect(302, target.href);
}

/** GET /sky/login (SPEC §4.1). */
export function login(passport: Authenticator) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const ctx = contextOf(req);
    const redirect = safeRedirect(req.query['redirect_uri'], ctx.config.externalUrl).href;
    const flyPort = parseFlyPort(req.query['fly_port']);
    const state: LoginState = flyPort === undefined ? { redirect } : { redirect, flyPort };
    const existing = validCookieToken(req);
    if (existing) {
      // As Concourse: a browser that already holds a good token is not sent to Bitbucket again.
      land(req, res, existing, state);
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

function validCookieToken(req: Request): LoginResult | null {
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
    const done = (
      err: unknown,
      result: LoginResult | false,
      info?: { message?: string; state?: LoginState },
    ) => {
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
        req.session.skySubject = result.claims.sub;
        req.session.skyTokenId = result.claims.jti;
        req.session.save((saveErr) => {
          if (saveErr) return next(saveErr);
          land(req, res, result, landing);
        });
      });
    };
    passport.authenticate(BITBUCKET_CLOUD, { session: false }, done)(req, res, next);
  };
}
