import express, { type Request, type RequestHandler, type RequestParamHandler, type Response } from 'express';
import { SkyError } from '../errors';
import { diffTeamAuth, parseTeamAuth, roleOf, validateTeamName, type TeamAuth } from '../teams/auth';
import { claimsOf } from './context';
import { auditHandlers } from './audit-api';
import type { RouteKey } from './routes';
import { tokenHandlers } from './tokens-api';
import { personActor } from '../audit/trail';
import {
  authenticate,
  contextOf,
  currentAccess,
  actingIdentity,
  currentRole,
  forbiddenFor,
  isAdmin,
  requiresAdmin,
  requiresAuth,
  requiresTeamRole,
} from './guards';

/** What the API shows of a team (Concourse's `atc.Team` without the numeric id). */
interface TeamView {
  name: string;
  auth: TeamAuth;
}

/** Team configs are small: 1,000 entries per role list of 256 characters fit comfortably. */
const BODY_LIMIT = '1mb';

/** `:team` in a path: a valid team name, or 400 before any handler runs. */
export const checkTeamParam: RequestParamHandler = (_req, _res, next, value: unknown) => {
  try {
    validateTeamName(value);
    next();
  } catch (err) {
    next(err);
  }
};

/**
 * The JSON API of SPEC §4.7: /api/v1/user and the teams routes (their paths and methods are in the
 * route table; only those exact paths are sky's, so a host app's own routes below /api stay reachable).
 */
export function apiHandlers() {
  return {
    'GET /api/v1/user': [requiresAuth(), userInfo],
    'GET /api/v1/teams': [requiresAuth(), listTeams],
    'GET /api/v1/teams/:team': [requiresTeamRole('viewer'), getTeam],
    'PUT /api/v1/teams/:team': [requiresAuth(), express.json({ limit: BODY_LIMIT }), putTeam],
    'DELETE /api/v1/teams/:team': [requiresAdmin(), deleteTeam],
    ...tokenHandlers(),
    ...auditHandlers(),
  } satisfies Partial<Record<RouteKey, RequestHandler[]>>;
}

const teamParam = (req: Request): string => (req.params as { team: string }).team;

/** GET /api/v1/user. */
async function userInfo(req: Request, res: Response): Promise<void> {
  const { claims, teams, admin } = await currentAccess(req);
  res.set('Cache-Control', 'no-store').json({
    sub: claims.sub,
    name: claims.name,
    user_id: claims.user_id,
    user_name: claims.user_name,
    email: claims.email,
    is_admin: admin,
    teams,
    connector: claims.connector,
    display_user_id: claims.user_name || claims.user_id,
  });
}

/** GET /api/v1/teams: the teams where the caller holds any role; every team for an admin. */
async function listTeams(req: Request, res: Response): Promise<void> {
  const claims = authenticate(req);
  const ctx = contextOf(req);
  const identity = await actingIdentity(ctx, claims);
  const teams = (await isAdmin(ctx, identity)) ? await ctx.teams.all() : await ctx.teams.configsOf(identity);
  const views: TeamView[] = [...teams]
    .map(([name, auth]) => ({ name, auth }))
    .sort((a, b) => a.name.localeCompare(b.name));
  res.set('Cache-Control', 'no-store').json(views);
}

/** GET /api/v1/teams/:team (viewer or admin). */
async function getTeam(req: Request, res: Response): Promise<void> {
  const name = teamParam(req);
  const auth = await contextOf(req).teams.get(name);
  if (!auth) throw new SkyError('team_not_found', `team '${name}' not found`);
  res.set('Cache-Control', 'no-store').json({ name, auth } satisfies TeamView);
}

/**
 * PUT /api/v1/teams/:team with {"auth": …}: 200 when an owner or an admin updates, 201 when an admin
 * creates, 400 with the validation message. Who may act is settled before the body is judged.
 */
async function putTeam(req: Request, res: Response): Promise<void> {
  const claims = authenticate(req);
  const ctx = contextOf(req);
  const name = teamParam(req);
  // Judged on the groups Bitbucket gives now (SPEC §5.3): a write never makes permanent a role the
  // writer no longer holds.
  const identity = await actingIdentity(ctx, claims);
  const [held, admin] = await Promise.all([currentRole(ctx, identity, name), isAdmin(ctx, identity)]);
  if (!admin && held !== 'owner') throw forbiddenFor(ctx, identity);
  if (!req.is('application/json')) {
    throw new SkyError(
      'invalid_request',
      'send the team as JSON {"auth": …} with Content-Type: application/json',
      {
        status: 415,
      },
    );
  }
  const body: unknown = req.body;
  const raw =
    typeof body === 'object' && body !== null && !Array.isArray(body)
      ? (body as Record<string, unknown>)['auth']
      : undefined;
  const auth = parseTeamAuth(raw);
  if (name === 'main' && roleOf(identity, auth) !== 'owner') {
    // No lock-outs: whoever changes main keeps owning it (and so stays admin).
    throw new SkyError(
      'invalid_team',
      'the new config of main must keep you as an owner (its owners are the admins; this avoids a lock-out)',
    );
  }
  const before = await ctx.teams.get(name);
  // An owner who is not admin may only update: if the team vanished meanwhile, they must not create it.
  const outcome = await ctx.teams.put(name, auth, admin ? 'upsert' : 'update');
  if (outcome === 'missing') throw forbiddenFor(ctx, identity);
  ctx.log.info({ reqId: req.skyRequestId, sub: claims.sub, team: name, outcome }, 'team saved');
  await ctx.audit.record({
    action: outcome === 'created' ? 'team.create' : 'team.update',
    actor: personActor(claims),
    team: name,
    requestId: req.skyRequestId,
    detail: { changes: diffTeamAuth(outcome === 'created' ? null : before, auth) },
  });
  res
    .status(outcome === 'created' ? 201 : 200)
    .set('Cache-Control', 'no-store')
    .json({ name, auth } satisfies TeamView);
}

/** DELETE /api/v1/teams/:team (admin); `main` cannot be deleted. */
async function deleteTeam(req: Request, res: Response): Promise<void> {
  const ctx = contextOf(req);
  const name = teamParam(req);
  if (name === 'main') throw new SkyError('forbidden', 'the main team cannot be deleted');
  const before = await ctx.teams.get(name);
  if (!(await ctx.teams.delete(name))) throw new SkyError('team_not_found', `team '${name}' not found`);
  const claims = claimsOf(req);
  ctx.log.info({ reqId: req.skyRequestId, sub: claims?.sub, team: name }, 'team deleted');
  // Its automation tokens go with it: a team of the same name made later must not inherit them.
  const revoked = await ctx.automationTokens.revokeTeam(name);
  await ctx.audit.record({
    action: 'team.delete',
    actor: claims ? personActor(claims) : { system: true },
    team: name,
    requestId: req.skyRequestId,
    detail: { changes: diffTeamAuth(before, null), tokens_revoked: revoked.map((t) => t.name) },
  });
  res.status(204).end();
}
