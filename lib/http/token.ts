import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Identity } from '../connector';
import { SkyError } from '../errors';
import type { IssuedRefresh } from '../tokens/grants';
import { contextOf } from './guards';

/**
 * POST /sky/token (SPEC §4.4): `refresh_token` (RFC 6749 §6: the person is re-read from Bitbucket with
 * their current teams, and the refresh token rotates) and `authorization_code` with `code_verifier` (the
 * sky CLI's login, RFC 8252 + RFC 7636: the login family starts here). Errors are RFC 6749 bodies (the
 * one error handler writes them for this path).
 */
export function tokenEndpoint(): RequestHandler[] {
  return [formOnly, express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 10 }), redeem];
}

const formOnly: RequestHandler = (req, _res, next) => {
  if (!req.is('application/x-www-form-urlencoded')) {
    throw new SkyError('invalid_request', 'send the token request as application/x-www-form-urlencoded');
  }
  next();
};

function param(req: Request, name: string): string | undefined {
  const body = req.body as Record<string, unknown> | undefined;
  const value = body?.[name];
  if (Array.isArray(value)) throw new SkyError('invalid_request', `${name} is given more than once`);
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Each grant type: what it redeems, as an identity and the login family to issue from. */
const GRANTS: Record<string, (req: Request) => Promise<{ identity: Identity } & IssuedRefresh>> = {
  refresh_token: (req) => {
    const presented = param(req, 'refresh_token');
    if (presented === undefined) throw new SkyError('invalid_request', 'refresh_token is missing');
    return contextOf(req).grants.redeem(presented);
  },
  authorization_code: (req) => {
    const code = param(req, 'code');
    if (code === undefined) throw new SkyError('invalid_request', 'code is missing');
    const verifier = param(req, 'code_verifier');
    if (verifier === undefined) throw new SkyError('invalid_request', 'code_verifier is missing');
    return contextOf(req).grants.redeemCode(code, verifier);
  },
};

async function redeem(req: Request, res: Response): Promise<void> {
  const ctx = contextOf(req);
  const grantType = param(req, 'grant_type');
  if (grantType === undefined) throw new SkyError('invalid_request', 'grant_type is missing');
  const grant = Object.hasOwn(GRANTS, grantType) ? GRANTS[grantType] : undefined;
  if (!grant) {
    throw new SkyError(
      'unsupported_grant_type',
      `grant_type '${grantType.slice(0, 40)}' is not supported (use ${Object.keys(GRANTS).join(' or ')})`,
    );
  }
  const redeemed = await grant(req);
  let issued;
  try {
    // A refresh read the person from Bitbucket just now; a CLI login's code carries the browser's view.
    issued = await ctx.issue(redeemed.identity, async () => redeemed, grantType === 'refresh_token');
  } catch (err) {
    // Still a person, but no longer in any team: this grant gives nothing any more.
    if (err instanceof SkyError && err.code === 'not_in_any_team') {
      throw new SkyError('invalid_grant', 'you are no longer a member of any team', { cause: err });
    }
    throw err;
  }
  ctx.log.info(
    { reqId: req.skyRequestId, sub: issued.claims.sub, jti: issued.claims.jti },
    grantType === 'refresh_token' ? 'token refreshed' : 'CLI login redeemed',
  );
  res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' }).json({
    access_token: issued.token,
    token_type: 'bearer',
    expires_in: issued.claims.exp - issued.claims.iat,
    refresh_token: issued.refreshToken,
  });
}
