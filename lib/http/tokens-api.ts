import express, { type Request, type Response } from 'express';
import { personActor } from '../audit/trail';
import { SkyError } from '../errors';
import { isRole, ROLES } from '../teams/auth';
import type { SkyClaims } from '../tokens';
import { parseExpiresIn, validateTokenName } from '../tokens/automation';
import { actingIdentity, authenticate, contextOf, currentRole, forbiddenFor, isAdmin } from './guards';

/** The default lifetime of an automation token (README "Automation tokens"). */
const DEFAULT_EXPIRES_MS = 90 * 86_400_000;

const teamParam = (req: Request): string => (req.params as { team: string }).team;

/**
 * Who may manage the team's automation tokens: its owners and the admins (a person's token; an
 * automation token never gets here: authenticate refuses it). Resolves the role they may hand out up to.
 */
async function manager(req: Request): Promise<{ claims: SkyClaims; admin: boolean }> {
  const claims = authenticate(req);
  const ctx = contextOf(req);
  const team = teamParam(req);
  const identity = await actingIdentity(ctx, claims);
  const [held, admin] = await Promise.all([currentRole(ctx, identity, team), isAdmin(ctx, identity)]);
  if (!admin && held !== 'owner') throw forbiddenFor(ctx, identity);
  if (!(await ctx.teams.get(team))) throw new SkyError('team_not_found', `team '${team}' not found`);
  return { claims, admin };
}

/** POST /api/v1/teams/:team/tokens {name, role, expires_in}: 201 with the secret, shown this once. */
async function createToken(req: Request, res: Response): Promise<void> {
  const { claims } = await manager(req);
  const ctx = contextOf(req);
  const team = teamParam(req);
  if (!req.is('application/json')) {
    throw new SkyError(
      'invalid_request',
      'send {"name", "role", "expires_in"} as JSON with Content-Type: application/json',
      {
        status: 415,
      },
    );
  }
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new SkyError('invalid_request', 'the body must be a JSON object {"name", "role", "expires_in"}');
  const fields = body as Record<string, unknown>;
  const name = validateTokenName(fields['name']);
  const role = fields['role'];
  if (!isRole(role))
    throw new SkyError(
      'invalid_request',
      `invalid role '${String(role).slice(0, 40)}' (roles: ${ROLES.join(', ')})`,
    );
  // Only owners and admins get here, and owner is the highest role: every role is at most their own.
  const expiresInMs =
    fields['expires_in'] === undefined
      ? Math.min(DEFAULT_EXPIRES_MS, ctx.config.automationTokenMaxDurationMs)
      : parseExpiresIn(fields['expires_in'], ctx.config.automationTokenMaxDurationMs);
  const creator = { sub: claims.sub, name: claims.name };
  const { secret, token } = await ctx.automationTokens.create({ team, name, role, expiresInMs, creator });
  await ctx.audit.record({
    action: 'token.create',
    actor: personActor(claims),
    team,
    requestId: req.skyRequestId,
    detail: { name, role, expires_at: new Date(token.expires).toISOString() },
  });
  res
    .status(201)
    .set('Cache-Control', 'no-store')
    .json({
      team,
      name,
      role,
      token: secret,
      created_at: new Date(token.created).toISOString(),
      expires_at: new Date(token.expires).toISOString(),
    });
}

/** GET /api/v1/teams/:team/tokens: name, role, creator, times; never a secret. */
async function listTokens(req: Request, res: Response): Promise<void> {
  await manager(req);
  const tokens = await contextOf(req).automationTokens.list(teamParam(req));
  res.set('Cache-Control', 'no-store').json(tokens);
}

/** DELETE /api/v1/teams/:team/tokens/:name: 204, revoked on every node; 404 when there is none. */
async function revokeToken(req: Request, res: Response): Promise<void> {
  const { claims } = await manager(req);
  const ctx = contextOf(req);
  const team = teamParam(req);
  const name = validateTokenName((req.params as { name: string }).name);
  const token = await ctx.automationTokens.revoke(team, name);
  if (!token) throw new SkyError('not_found', `team '${team}' has no automation token named '${name}'`);
  await ctx.audit.record({
    action: 'token.revoke',
    actor: personActor(claims),
    team,
    requestId: req.skyRequestId,
    detail: { name, role: token.role },
  });
  res.status(204).end();
}

export function tokenHandlers() {
  return {
    'GET /api/v1/teams/:team/tokens': [listTokens],
    'POST /api/v1/teams/:team/tokens': [express.json({ limit: '4kb' }), createToken],
    'DELETE /api/v1/teams/:team/tokens/:name': [revokeToken],
  };
}
