import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Identity } from '../connector';
import { SkyError } from '../errors';
import { roleIncludes, roleOf, type Role } from '../teams/auth';
import { csrfMatches, tokenFromAuthorization, tokenFromCookieHeader, type SkyClaims } from '../tokens';
import { claimsOf, rememberClaims, skyContextOf, type SkyContext } from './context';

/** Methods that change nothing: a cookie is enough for them; others need X-Csrf-Token (SPEC §7.2). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const notAuthorized = (reason: string): SkyError =>
  new SkyError('not_authorized', 'not authorized', { cause: new Error(reason) });

export function contextOf(req: Request): SkyContext {
  const ctx = skyContextOf(req);
  if (!ctx) {
    throw new SkyError(
      'invalid_config',
      'sky guards need the sky() router mounted before the guarded routes',
    );
  }
  return ctx;
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
  const token = tokenFromCookieHeader(req.headers.cookie);
  return token ? { token, viaCookie: true } : null;
}

/**
 * SPEC §7.3 in order: signature and alg → iss/aud/exp → revocation; plus CSRF for cookie requests.
 * Every failure is the same 401 `not authorized`; the reason goes to the log only.
 */
export function authenticate(req: Request): SkyClaims {
  const known = claimsOf(req);
  if (known) return known;
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
  rememberClaims(req, claims);
  return claims;
}

/** HTML forms cannot send headers; sky's own forms (log out) send the CSRF token as a field. */
function formCsrfToken(req: Request): string | undefined {
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null) return undefined;
  const value = (body as Record<string, unknown>)['csrf_token'];
  return typeof value === 'string' ? value : undefined;
}

/** One identity per verified token (the verifier hands out the same frozen claims for a repeated token). */
const identities = new WeakMap<SkyClaims, Identity>();

/** The identity a token stands for, as team configs match it (never a nickname: tokens carry none). */
export function identityOf(claims: SkyClaims): Identity {
  let identity = identities.get(claims);
  if (!identity) {
    identity = {
      connector: claims.connector,
      userId: claims.user_id,
      accountId: claims.account_id,
      ...(claims.user_name ? { userName: claims.user_name } : {}),
      name: claims.name,
      ...(claims.email ? { email: claims.email } : {}),
      groups: claims.groups,
    };
    identities.set(claims, identity);
  }
  return identity;
}

/** A value now, or later: the guards decide without waiting whenever the team configs are cached. */
type Now<T> = T | Promise<T>;

/** The user's role on a team from this node's cache, or undefined when the cache does not know the team. */
function cachedRole(ctx: SkyContext, claims: SkyClaims, team: string): Role | null | undefined {
  const auth = ctx.teams.cached(team);
  return auth === undefined ? undefined : auth ? roleOf(identityOf(claims), auth) : null;
}

async function storedRole(ctx: SkyContext, claims: SkyClaims, team: string): Promise<Role | null> {
  const auth = await ctx.teams.get(team);
  return auth ? roleOf(identityOf(claims), auth) : null;
}

/** The current role of the token's user on a team, or null (SPEC §6.3). */
export function currentRole(ctx: SkyContext, claims: SkyClaims, team: string): Now<Role | null> {
  const role = cachedRole(ctx, claims, team);
  return role !== undefined ? role : storedRole(ctx, claims, team);
}

/** Admin = owner of `main`, evaluated on the current config (SPEC §6.3). */
export async function isAdmin(ctx: SkyContext, claims: SkyClaims): Promise<boolean> {
  return (await currentRole(ctx, claims, 'main')) === 'owner';
}

/** At least `role` on `team`, or admin; with no promise (the common case) when both configs are cached. */
function holds(ctx: SkyContext, claims: SkyClaims, team: string, role: Role): Now<boolean> {
  const held = cachedRole(ctx, claims, team);
  if (held === undefined) {
    return storedRole(ctx, claims, team).then((r) =>
      r !== null && roleIncludes(r, role) ? true : isAdmin(ctx, claims),
    );
  }
  if (held !== null && roleIncludes(held, role)) return true;
  const main = cachedRole(ctx, claims, 'main');
  return main === undefined ? isAdmin(ctx, claims) : main === 'owner';
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

const forbidden = (): SkyError => new SkyError('forbidden', 'forbidden');

/** A guard passes, fails with `check`'s error, or says forbidden; with no promise when it need not wait. */
const guard =
  (check: (req: Request) => Now<boolean>): RequestHandler =>
  (req: Request, _res: Response, next: NextFunction): void => {
    let verdict: Now<boolean>;
    try {
      verdict = check(req);
    } catch (err) {
      next(err);
      return;
    }
    if (verdict === true) next();
    else if (verdict === false) next(forbidden());
    else verdict.then((ok) => (ok ? next() : next(forbidden())), next);
  };

/** Any valid, unrevoked token. */
export function requiresAuth(): RequestHandler {
  return guard((req) => {
    authenticate(req);
    return true;
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
  return guard((req) => {
    const claims = authenticate(req);
    const ctx = contextOf(req);
    const team = teamOf(req, options.team);
    if (team === undefined)
      throw new SkyError('invalid_config', 'requiresTeamRole: no team named for this route');
    return holds(ctx, claims, team, role);
  });
}

/** Owner of `main`. */
export function requiresAdmin(): RequestHandler {
  return guard((req) => {
    const claims = authenticate(req);
    const ctx = contextOf(req);
    const main = cachedRole(ctx, claims, 'main');
    return main === undefined ? isAdmin(ctx, claims) : main === 'owner';
  });
}
