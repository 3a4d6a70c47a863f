import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Identity } from '../connector';
import { SkyError } from '../errors';
import { roleIncludes, roleOf, type Role } from '../teams/auth';
import {
  csrfMatches,
  parseCookies,
  tokenFromAuthorization,
  tokenFromCookies,
  type SkyClaims,
} from '../tokens';
import type { SkyContext } from './context';

/** Methods that change nothing: a cookie is enough for them; others need X-Csrf-Token (SPEC §7.2). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const notAuthorized = (reason: string): SkyError =>
  new SkyError('not_authorized', 'not authorized', { cause: new Error(reason) });

export function contextOf(req: Request): SkyContext {
  if (!req.sky) {
    throw new SkyError(
      'invalid_config',
      'sky guards need the sky() router mounted before the guarded routes',
    );
  }
  return req.sky;
}

/** Where the token of a request came from: a cookie request also needs CSRF and gets cookies cleared on 401. */
export interface PresentedToken {
  token: string;
  viaCookie: boolean;
}

export function presentedToken(req: Request): PresentedToken | null {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const token = tokenFromAuthorization(header);
    return token ? { token, viaCookie: false } : null;
  }
  const token = tokenFromCookies(parseCookies(req.headers.cookie));
  return token ? { token, viaCookie: true } : null;
}

/**
 * SPEC §7.3 in order: signature and alg → iss/aud/exp → revocation; plus CSRF for cookie requests.
 * Every failure is the same 401 `not authorized`; the reason goes to the log only.
 */
export function authenticate(req: Request): SkyClaims {
  if (req.skyToken) return req.skyToken;
  const ctx = contextOf(req);
  const presented = presentedToken(req);
  if (!presented) throw notAuthorized('no token presented');
  const claims = ctx.verifier.verify(presented.token);
  ctx.revocations.assertCurrent();
  if (ctx.revocations.isRevoked(claims)) throw notAuthorized('token revoked');
  if (presented.viaCookie && !SAFE_METHODS.has(req.method)) {
    const given = req.get('x-csrf-token') ?? formCsrfToken(req);
    if (!csrfMatches(claims.csrf, given)) throw notAuthorized('missing or wrong X-Csrf-Token');
  }
  req.skyToken = claims;
  return claims;
}

/** HTML forms cannot send headers; sky's own forms (log out) send the CSRF token as a field. */
function formCsrfToken(req: Request): string | undefined {
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null) return undefined;
  const value = (body as Record<string, unknown>)['csrf_token'];
  return typeof value === 'string' ? value : undefined;
}

/** The identity a token stands for, as team configs match it (never a nickname: tokens carry none). */
export function identityOf(claims: SkyClaims): Identity {
  return {
    connector: claims.connector,
    userId: claims.user_id,
    accountId: claims.account_id,
    ...(claims.user_name ? { userName: claims.user_name } : {}),
    name: claims.name,
    ...(claims.email ? { email: claims.email } : {}),
    groups: claims.groups,
  };
}

/** Admin = owner of `main`, evaluated on the current config (SPEC §6.3). */
export async function isAdmin(ctx: SkyContext, claims: SkyClaims): Promise<boolean> {
  const main = await ctx.teams.get('main');
  return main !== null && roleOf(identityOf(claims), main) === 'owner';
}

/** The current role of the token's user on a team, or null. */
export async function currentRole(ctx: SkyContext, claims: SkyClaims, team: string): Promise<Role | null> {
  const auth = await ctx.teams.get(team);
  return auth ? roleOf(identityOf(claims), auth) : null;
}

/** The teams and admin flag of a token's user, from the CURRENT team configs (SPEC §6.3). */
export async function currentAccess(
  req: Request,
): Promise<{ claims: SkyClaims; teams: Record<string, Role[]>; admin: boolean }> {
  const claims = authenticate(req);
  const ctx = contextOf(req);
  const [teams, admin] = await Promise.all([ctx.teams.teamsOf(identityOf(claims)), isAdmin(ctx, claims)]);
  return { claims, teams, admin };
}

type AsyncHandler = (req: Request, res: Response, next: NextFunction) => Promise<void> | void;

/** Guards are async; Express 5 routes a rejected promise to the error handler. */
const guard = (check: (req: Request) => Promise<void> | void): RequestHandler => {
  const handler: AsyncHandler = async (req, _res, next) => {
    await check(req);
    next();
  };
  return handler as RequestHandler;
};

/** Any valid, unrevoked token. */
export function requiresAuth(): RequestHandler {
  return guard((req) => {
    authenticate(req);
  });
}

export interface TeamRoleOptions {
  /** The team: a fixed name, or a function of the request. Default: the route parameter `team` (or `team_name`). */
  team?: string | ((req: Request) => string | undefined);
}

function teamOf(req: Request, option: TeamRoleOptions['team']): string | undefined {
  if (typeof option === 'string') return option;
  if (option) return option(req);
  const params = req.params as Record<string, string | undefined>;
  return params['team'] ?? params['team_name'];
}

/** At least `role` on the team (admins pass everything), judged on the current team config. */
export function requiresTeamRole(role: Role, options: TeamRoleOptions = {}): RequestHandler {
  return guard(async (req) => {
    const claims = authenticate(req);
    const ctx = contextOf(req);
    const team = teamOf(req, options.team);
    if (team === undefined)
      throw new SkyError('invalid_config', 'requiresTeamRole: no team named for this route');
    const held = await currentRole(ctx, claims, team);
    if (held !== null && roleIncludes(held, role)) return;
    if (await isAdmin(ctx, claims)) return;
    throw new SkyError('forbidden', 'forbidden');
  });
}

/** Owner of `main`. */
export function requiresAdmin(): RequestHandler {
  return guard(async (req) => {
    const claims = authenticate(req);
    if (!(await isAdmin(contextOf(req), claims))) throw new SkyError('forbidden', 'forbidden');
  });
}
