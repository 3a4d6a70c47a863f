import type { Request, Response } from 'express';
import type { AuditEvent } from '../audit/trail';
import { SkyError } from '../errors';
import { validateTeamName } from '../teams/auth';
import { parseExpiresIn } from '../tokens/automation';
import { actingIdentity, authenticate, contextOf, forbiddenFor, isAdmin } from './guards';

const MAX_LIMIT = 1000;

/** One query parameter given at most once (a repeated one is a 400, as everywhere in sky). */
function single(req: Request, name: string): string | undefined {
  const value: unknown = (req.query as Record<string, unknown>)[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new SkyError('invalid_request', `give ${name} once`);
  return value;
}

/** `since`: a duration back from now (`24h`, `7d`) or a time (RFC 3339); epoch ms. */
function parseSince(value: string | undefined, now: number, retentionMs: number): number {
  if (value === undefined) return now - retentionMs;
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    const at = Date.parse(value);
    if (Number.isFinite(at)) return at;
  } else {
    try {
      return now - parseExpiresIn(value, Number.MAX_SAFE_INTEGER);
    } catch {
      // the message below names the parameter
    }
  }
  throw new SkyError(
    'invalid_request',
    `invalid since '${value.slice(0, 40)}': give a duration such as 24h or 7d, or a time such as 2026-12-01T00:00:00Z`,
  );
}

/**
 * GET /api/v1/audit?team=&since=&limit=: newest first. Admins see every event; a team's owners see
 * that team's (without `team`: every team they own). Others: 403.
 */
async function readAudit(req: Request, res: Response): Promise<void> {
  const claims = authenticate(req);
  const ctx = contextOf(req);
  const identity = await actingIdentity(ctx, claims);
  const teamQuery = single(req, 'team');
  const team = teamQuery === undefined ? undefined : validateTeamName(teamQuery);
  const limitText = single(req, 'limit') ?? '100';
  const limit = /^\d{1,4}$/.test(limitText) ? Number(limitText) : NaN;
  if (!(limit >= 1 && limit <= MAX_LIMIT))
    throw new SkyError('invalid_request', `invalid limit '${limitText.slice(0, 20)}': give 1-${MAX_LIMIT}`);
  const since = parseSince(single(req, 'since'), Date.now(), ctx.config.auditRetentionMs);
  let visible: (event: AuditEvent) => boolean;
  if (await isAdmin(ctx, identity)) {
    visible = team === undefined ? () => true : (event) => event.team === team;
  } else {
    const owned = Object.entries(await ctx.teams.teamsOf(identity))
      .filter(([, roles]) => roles.includes('owner'))
      .map(([name]) => name);
    if (team !== undefined ? !owned.includes(team) : owned.length === 0) throw forbiddenFor(ctx, identity);
    const teams = new Set(team === undefined ? owned : [team]);
    visible = (event) => event.team !== null && teams.has(event.team);
  }
  const events = await ctx.audit.read(since, limit, visible);
  res.set('Cache-Control', 'no-store').json(events);
}

export function auditHandlers() {
  return { 'GET /api/v1/audit': [readAudit] };
}
