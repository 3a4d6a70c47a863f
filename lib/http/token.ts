import express, { type Request, type RequestHandler, type Response } from 'express';
import { SkyError } from '../errors';
import { contextOf } from './guards';

/**
 * POST /sky/token (SPEC §4.4, RFC 6749 §6): `grant_type=refresh_token`. The refresh re-reads the person
 * from Bitbucket and their current teams, and the refresh token rotates. Errors are RFC 6749 bodies
 * (the one error handler writes them for this path).
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

async function redeem(req: Request, res: Response): Promise<void> {
  const ctx = contextOf(req);
  const grantType = param(req, 'grant_type');
  if (grantType === undefined) throw new SkyError('invalid_request', 'grant_type is missing');
  if (grantType !== 'refresh_token') {
    throw new SkyError(
      'unsupported_grant_type',
      `grant_type '${grantType.slice(0, 40)}' is not supported (use refresh_token)`,
    );
  }
  const presented = param(req, 'refresh_token');
  if (presented === undefined) throw new SkyError('invalid_request', 'refresh_token is missing');
  const redeemed = await ctx.grants.redeem(presented);
  let issued;
  try {
    issued = await ctx.issue(redeemed.identity, async () => redeemed);
  } catch (err) {
    // Still a person, but no longer in any team: this grant gives nothing any more.
    if (err instanceof SkyError && err.code === 'not_in_any_team') {
      throw new SkyError('invalid_grant', 'you are no longer a member of any team', { cause: err });
    }
    throw err;
  }
  ctx.log.info(
    { reqId: req.skyRequestId, sub: issued.claims.sub, jti: issued.claims.jti },
    'token refreshed',
  );
  res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' }).json({
    access_token: issued.token,
    token_type: 'bearer',
    expires_in: issued.claims.exp - issued.claims.iat,
    refresh_token: issued.refreshToken,
  });
}
