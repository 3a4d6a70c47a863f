import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Identity } from '../connector';
import { SkyError } from '../errors';
import { roleIncludes, roleOf, type Role } from '../teams/auth';
import { csrfMatches, tokenFromAuthorization, tokenFromCookieHeader, type SkyClaims } from '../tokens';
import { AUTOMATION_PREFIX, isAutomationSecret } from '../tokens/automation';
import { requestState, type RequestState, type SkyContext } from './context';

/** Methods that change nothing: a cookie is enough for them; others need X-Csrf-Token (SPEC §7.2). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const notAuthorized = (reason: string): SkyError =>
  new SkyError('not_authorized', 'not authorized', { cause: new Error(reason) });

/** What sky knows of a guarded request; the guards need the sky() router in front of them. */
function stateOf(req: Request): RequestState {
  const state = requestState(req);
  if (!state) {
    throw new SkyError(
      'invalid_config',
      'sky guards need the sky() router mounted before the guarded routes',
    );
  }
  return state;
}

export function contextOf(req: Request): SkyContext {
  return stateOf(req).ctx;
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
export function authenticate(req: Request, state: RequestState = stateOf(req)): SkyClaims {
  if (state.claims) return state.claims;
  const { ctx } = state;
  const presented = presentedToken(req);
  if (!presented) throw notAuthorized('no token presented');
  if (isAutomationSecret(presented.token))
    throw notAuthorized('an automation token passes only the role routes of its team');
  const claims = ctx.verifier.verify(presented.token);
  ctx.revocations.assertCurrent();
  if (ctx.revocations.isRevoked(claims)) throw notAuthorized('token revoked');
  if (presented.viaCookie && !SAFE_METHODS.has(req.method)) {
    const given = req.get('x-csrf-token') ?? formCsrfToken(req);
    if (!csrfMatches(claims.csrf, given)) throw notAuthorized('missing or wrong X-Csrf-Token');
  }
  state.claims = claims;
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

const then = <T, R>(value: Now<T>, next: (v: T) => Now<R>): Now<R> =>
  value instanceof Promise ? value.then(next) : next(value);

/**
 * The person a request acts as: the token's identity with groups at most SKY_GROUPS_MAX_AGE old
 * (SPEC §5.3). Synchronous on the hot path; it waits only when the groups must be read again first.
 */
export function actingIdentity(ctx: SkyContext, claims: SkyClaims): Now<Identity> {
  return ctx.groups.identityOf(claims, identityOf(claims));
}

/** The user's role on a team from this node's cache, or undefined when the cache does not know the team. */
function cachedRole(ctx: SkyContext, identity: Identity, team: string): Role | null | undefined {
  const auth = ctx.teams.cached(team);
  return auth === undefined ? undefined : auth ? roleOf(identity, auth) : null;
}

async function storedRole(ctx: SkyContext, identity: Identity, team: string): Promise<Role | null> {
  const auth = await ctx.teams.get(team);
  return auth ? roleOf(identity, auth) : null;
}

/** The current role of the person on a team, or null (SPEC §6.3). */
export function currentRole(ctx: SkyContext, identity: Identity, team: string): Now<Role | null> {
  const role = cachedRole(ctx, identity, team);
  return role !== undefined ? role : storedRole(ctx, identity, team);
}

/** Admin = owner of `main`, evaluated on the current config (SPEC §6.3). */
export function isAdmin(ctx: SkyContext, identity: Identity): Now<boolean> {
  return then(currentRole(ctx, identity, 'main'), (role) => role === 'owner');
}

/** At least `role` on `team`, or admin; with no promise (the common case) when both configs are cached. */
function holds(ctx: SkyContext, identity: Identity, team: string, role: Role): Now<boolean> {
  const held = currentRole(ctx, identity, team);
  return held instanceof Promise
    ? held.then((h) => includesOrAdmin(ctx, identity, h, role))
    : includesOrAdmin(ctx, identity, held, role);
}

function includesOrAdmin(ctx: SkyContext, identity: Identity, held: Role | null, role: Role): Now<boolean> {
  return held !== null && roleIncludes(held, role) ? true : isAdmin(ctx, identity);
}

/** The teams and admin flag of a token's user, from the CURRENT team configs (SPEC §6.3). */
export async function currentAccess(req: Request): Promise<{
  claims: SkyClaims;
  identity: Identity;
  teams: Record<string, Role[]>;
  admin: boolean;
}> {
  const claims = authenticate(req);
  const ctx = contextOf(req);
  const identity = await actingIdentity(ctx, claims);
  const [teams, admin] = await Promise.all([ctx.teams.teamsOf(identity), isAdmin(ctx, identity)]);
  return { claims, identity, teams, admin };
}

/** 403; when the person's groups could not be read again in time, it says so (SPEC §5.3). */
export function forbiddenFor(ctx: SkyContext, identity: Identity): SkyError {
  if (!ctx.groups.wasDropped(identity)) return new SkyError('forbidden', 'forbidden');
  const minutes = Math.round(ctx.groups.maxAgeMs / 60_000);
  const connector = ctx.connectors.find((c) => c.id === identity.connector);
  const upstream = connector?.displayName ?? identity.connector;
  return new SkyError(
    'forbidden',
    `forbidden: your ${connector?.groupsName ?? `${upstream} groups`} could not be read again for more than ${minutes > 0 ? `${minutes * 2} minutes` : `${Math.round((ctx.groups.maxAgeMs * 2) / 1000)} seconds`}, so roles that come from them are suspended until ${upstream} answers`,
  );
}

/**
 * A guard passes, fails with `check`'s error, or is refused; with no promise when it need not wait.
 * The request's state is looked up once, here, and handed to the check.
 */
const guard =
  (check: (req: Request, state: RequestState) => Now<true | SkyError>): RequestHandler =>
  (req: Request, _res: Response, next: NextFunction): void => {
    const state = requestState(req);
    const metrics = state?.ctx.metrics;
    let verdict: Now<true | SkyError>;
    try {
      verdict = check(req, state ?? stateOf(req)); // stateOf throws: no sky() router in front
    } catch (err) {
      metrics?.guard(err);
      next(err);
      return;
    }
    if (verdict === true) {
      metrics?.guard(true);
      next();
    } else if (verdict instanceof SkyError) {
      metrics?.guard(verdict);
      next(verdict);
    } else
      verdict.then(
        (v) => {
          metrics?.guard(v);
          if (v === true) next();
          else next(v);
        },
        (err: unknown) => {
          metrics?.guard(err);
          next(err);
        },
      );
  };

/** The verdict on the acting identity: at least `role` on `team`, or admin. */
function judged(ctx: SkyContext, claims: SkyClaims, team: string, role: Role): Now<true | SkyError> {
  const identity = actingIdentity(ctx, claims);
  return identity instanceof Promise
    ? identity.then((acting) => verdictOn(ctx, acting, team, role))
    : verdictOn(ctx, identity, team, role);
}

function verdictOn(ctx: SkyContext, identity: Identity, team: string, role: Role): Now<true | SkyError> {
  const ok = holds(ctx, identity, team, role);
  if (ok instanceof Promise) return ok.then((yes) => (yes ? true : forbiddenFor(ctx, identity)));
  return ok ? true : forbiddenFor(ctx, identity);
}

/** Any valid, unrevoked token. */
export function requiresAuth(): RequestHandler {
  return guard((req, state) => {
    authenticate(req, state);
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

/**
 * At least `role` on the team (admins pass everything), judged on the current team config. An
 * automation token passes for its own team with at least `role` while that team exists.
 */
export function requiresTeamRole(role: Role, options: TeamRoleOptions = {}): RequestHandler {
  return guard((req, state) => {
    // One substring test keeps a JWT's header from being parsed twice; the prefix decides.
    const bearer = req.headers.authorization?.includes(AUTOMATION_PREFIX) ? presentedToken(req) : null;
    const automation = bearer && isAutomationSecret(bearer.token) ? bearer.token : null;
    const claims = automation === null ? authenticate(req, state) : null;
    const team = teamOf(req, options.team);
    if (team === undefined)
      throw new SkyError('invalid_config', 'requiresTeamRole: no team named for this route');
    if (claims === null) return automationVerdict(state.ctx, automation ?? '', team, role);
    return judged(state.ctx, claims, team, role);
  });
}

/** An automation token's verdict: its team, a role that includes `role`, the team still there. */
function automationVerdict(ctx: SkyContext, secret: string, team: string, role: Role): Now<true | SkyError> {
  ctx.revocations.assertCurrent();
  return then(ctx.automationTokens.lookup(secret), (found) => {
    if ('refused' in found) throw notAuthorized(found.refused);
    const { token } = found;
    if (token.team !== team || !roleIncludes(token.role, role)) return new SkyError('forbidden', 'forbidden');
    const cached = ctx.teams.cached(team);
    return then(cached === undefined ? ctx.teams.get(team) : cached, (auth): true => {
      if (!auth) throw notAuthorized('the automation token’s team was deleted');
      return true;
    });
  });
}

/** Owner of `main`. */
export function requiresAdmin(): RequestHandler {
  return guard((req, state) => judged(state.ctx, authenticate(req, state), 'main', 'owner'));
}
