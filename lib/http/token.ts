import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Identity } from '../connector';
import { personActor } from '../audit/trail';
import { SkyError } from '../errors';
import type { Redeemed } from '../tokens/grants';
import { contextOf } from './guards';
import { WRONG_PASSWORD } from './login';
import { checkPasswordBudget, countPasswordFailure } from './rate-limit';

/**
 * POST /sky/token (SPEC §4.4): `refresh_token` (RFC 6749 §6: the person is re-read from Bitbucket with
 * their current teams, and the refresh token rotates) and `authorization_code` with `code_verifier` (the
 * sky CLI's login, RFC 8252 + RFC 7636: the login family starts here). Errors are RFC 6749 bodies (the
 * one error handler writes them for this path).
 */
export function tokenEndpoint(): RequestHandler[] {
  // A password up to 1 MB gets the same refusal as any wrong one (grant_type=password), not a 413.
  return [formOnly, express.urlencoded({ extended: false, limit: '1100kb', parameterLimit: 10 }), redeem];
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
const GRANTS: Record<string, (req: Request) => Promise<Redeemed>> = {
  refresh_token: (req) => {
    const presented = param(req, 'refresh_token');
    if (presented === undefined) throw new SkyError('invalid_request', 'refresh_token is missing');
    return contextOf(req).grants.redeem(presented);
  },
  /**
   * `sky login -u NAME -p PASS` (fly login -u -p; RFC 6749 §4.3): a password connector's user, with a
   * family of its own. `connector` picks one when several take passwords. Every refusal is the same
   * invalid_grant, counted against the username.
   */
  password: async (req) => {
    const ctx = contextOf(req);
    const takers = ctx.connectors.filter((c) => c.password);
    const named = param(req, 'connector');
    const connector =
      named === undefined && takers.length === 1 ? takers[0] : takers.find((c) => c.id === named);
    if (!connector?.password) {
      throw new SkyError(
        takers.length === 0 ? 'unsupported_grant_type' : 'invalid_request',
        takers.length === 0
          ? 'no connector of this CI server takes passwords'
          : `connector must be one of ${takers.map((c) => c.id).join(', ')}`,
      );
    }
    const username = param(req, 'username') ?? '';
    await checkPasswordBudget(req, connector.id, username);
    let identity: Identity;
    try {
      identity = await connector.password(username, param(req, 'password') ?? '', 'token');
    } catch (err) {
      if (!(err instanceof SkyError && err.code === 'invalid_grant')) throw err;
      await countPasswordFailure(req, connector.id, username);
      ctx.log.info({ reqId: req.skyRequestId, connector: connector.id }, 'password login refused');
      throw new SkyError('invalid_grant', WRONG_PASSWORD);
    }
    return { identity, family: () => ctx.grants.start(identity) };
  },
  authorization_code: (req) => {
    const code = param(req, 'code');
    if (code === undefined) throw new SkyError('invalid_request', 'code is missing');
    const verifier = param(req, 'code_verifier');
    if (verifier === undefined) throw new SkyError('invalid_request', 'code_verifier is missing');
    return contextOf(req).grants.redeemCode(code, verifier);
  },
};

/** Every grant but a password fits in this (a password of any length gets the wrong-password answer). */
const MAX_FORM_BYTES = 8 * 1024;

async function redeem(req: Request, res: Response): Promise<void> {
  const ctx = contextOf(req);
  const grantType = param(req, 'grant_type');
  if (grantType === undefined) throw new SkyError('invalid_request', 'grant_type is missing');
  if (grantType !== 'password' && Number(req.headers['content-length'] ?? 0) > MAX_FORM_BYTES) {
    throw new SkyError('payload_too_large', 'request body too large');
  }
  const grant = Object.hasOwn(GRANTS, grantType) ? GRANTS[grantType] : undefined;
  if (!grant) {
    throw new SkyError(
      'unsupported_grant_type',
      `grant_type '${grantType.slice(0, 40)}' is not supported (use ${Object.keys(GRANTS).join(', ')})`,
    );
  }
  const redeemed = await grant(req);
  let issued;
  try {
    // A refresh read the person from Bitbucket just now; a CLI login's code carries the browser's view.
    issued = await ctx.issue(redeemed.identity, redeemed.family, grantType !== 'authorization_code');
  } catch (err) {
    // A person in no team: a refresh gives nothing any more; a login says which account it was, as the page does.
    if (err instanceof SkyError && err.code === 'not_in_any_team') {
      const description =
        grantType === 'refresh_token' ? 'you are no longer a member of any team' : err.message;
      throw new SkyError('invalid_grant', description, { cause: err });
    }
    throw err;
  }
  if (grantType === 'refresh_token') ctx.metrics.refreshes.inc({ result: 'issued' });
  if (grantType === 'password') {
    ctx.metrics.logins.inc({ connector: redeemed.identity.connector });
    await ctx.audit.record({
      action: 'login.success',
      actor: personActor(issued.claims),
      requestId: req.skyRequestId,
    });
  }
  ctx.log.info(
    { reqId: req.skyRequestId, sub: issued.claims.sub, jti: issued.claims.jti },
    grantType === 'refresh_token'
      ? 'token refreshed'
      : grantType === 'password'
        ? 'password login'
        : 'CLI login redeemed',
  );
  res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' }).json({
    access_token: issued.token,
    token_type: 'bearer',
    expires_in: issued.claims.exp - issued.claims.iat,
    refresh_token: issued.refreshToken,
  });
}
