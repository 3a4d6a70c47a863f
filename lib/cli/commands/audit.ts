import type { AuditEvent } from '../../audit/trail';
import { SkyError } from '../../errors';
import { validateTeamName } from '../../teams/auth';
import { parseExpiresIn } from '../../tokens/automation';
import { callApi, expectJson } from '../client';
import {
  booleanOption,
  openSession,
  print,
  stringOption,
  type CommandSpec,
  type Context,
  type Values,
} from '../command';
import { renderTable } from '../io';
import { flyTime } from './tokens';

/** The node's most events per request (GET /api/v1/audit). */
const MAX_LIMIT = 1000;
/** Longest detail summary in the table; --json has all of it. */
const DETAIL_WIDTH = 100;

/** --since: a duration back (`24h`, `7d`) or an RFC 3339 time, as the node takes it. */
function since(values: Values): string | undefined {
  const raw = stringOption(values, 'since');
  if (raw === undefined) return undefined;
  const ok = /^\d{4}-\d{2}-\d{2}T/.test(raw)
    ? Number.isFinite(Date.parse(raw))
    : (() => {
        try {
          parseExpiresIn(raw, Number.MAX_SAFE_INTEGER);
          return true;
        } catch {
          return false;
        }
      })();
  if (!ok) {
    throw new SkyError(
      'invalid_request',
      `invalid --since '${raw.slice(0, 40)}': give a duration such as 24h or 7d, or a time such as 2026-12-01T00:00:00Z`,
    );
  }
  return raw;
}

function limit(values: Values): string | undefined {
  const raw = stringOption(values, 'limit');
  if (raw === undefined) return undefined;
  if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_LIMIT) {
    throw new SkyError('invalid_request', `invalid --limit '${raw.slice(0, 20)}': give 1-${MAX_LIMIT}`);
  }
  return String(Number(raw));
}

/** Who acted, in one word: the person's name, `token:<name>`, `sky` itself or `anonymous`. */
export function actorOf(actor: AuditEvent['actor'] | null | undefined): string {
  // Read as any JSON: a node of another version may name actors otherwise.
  const a = (actor ?? {}) as Record<string, unknown>;
  const text = (key: string): string => (typeof a[key] === 'string' ? a[key] : '');
  if (text('token')) return `token:${text('token')}`;
  if (a['system'] === true) return 'sky';
  if (a['anonymous'] === true) return 'anonymous';
  return text('name') || text('sub') || 'unknown';
}

const list = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];

/** A team change (`changes`: per role, added and removed users and groups) as `owner +a -b`. */
function changesOf(changes: Record<string, unknown>): string {
  return Object.entries(changes)
    .map(([role, change]) => {
      const c = (change ?? {}) as Record<string, Record<string, unknown> | undefined>;
      const added = [...list(c['added']?.['users']), ...list(c['added']?.['groups'])].map((e) => `+${e}`);
      const removed = [...list(c['removed']?.['users']), ...list(c['removed']?.['groups'])].map(
        (e) => `-${e}`,
      );
      return [role, ...added, ...removed].join(' ');
    })
    .join('; ');
}

/** The detail of an event in one line: `key=value` pairs, a team change as its per-role entries. */
export function summary(detail: Record<string, unknown>): string {
  const parts = Object.entries(detail).map(([key, value]) => {
    if (key === 'changes' && typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const text = changesOf(value as Record<string, unknown>);
      return text === '' ? 'no role changed' : text;
    }
    if (typeof value === 'string') return `${key}=${value}`;
    if (Array.isArray(value)) return `${key}=${value.map(String).join(',') || 'none'}`;
    return `${key}=${JSON.stringify(value)}`;
  });
  const text = parts.join(', ');
  return text.length > DETAIL_WIDTH ? `${text.slice(0, DETAIL_WIDTH - 1)}…` : text;
}

/** sky audit: the node's audit trail, newest first (admins: every team; owners: their teams). */
async function audit(ctx: Context, values: Values): Promise<void> {
  const given = stringOption(values, 'team-name');
  const query = new URLSearchParams();
  if (given !== undefined) query.set('team', validateTeamName(given));
  const from = since(values);
  if (from !== undefined) query.set('since', from);
  const most = limit(values);
  if (most !== undefined) query.set('limit', most);
  const session = await openSession(ctx);
  const search = query.toString();
  const path = `/api/v1/audit${search ? `?${search}` : ''}`;
  const events = await expectJson<AuditEvent[]>(await callApi(session, path));
  if (booleanOption(values, 'json')) {
    print(ctx, JSON.stringify(events, null, 2) + '\n');
    return;
  }
  const rows = events.map((e) => [
    flyTime(e.time),
    e.action,
    actorOf(e.actor),
    e.team ?? 'n/a',
    summary(e.detail ?? {}),
  ]);
  print(
    ctx,
    renderTable(['time', 'action', 'who', 'team', 'detail'], rows, ctx.printHeaders, { keepOrder: true }),
  );
}

export const auditCommand: CommandSpec = {
  name: 'audit',
  aliases: [],
  summary: 'Show the audit trail, newest first (admins: every team; owners: their teams)',
  options: {
    'team-name': { type: 'string', short: 'n', value: 'TEAM', description: "Only this team's events" },
    since: {
      type: 'string',
      value: 'SINCE',
      description: 'Events since a duration ago (24h, 7d) or a time (2026-12-01T00:00:00Z)',
    },
    limit: { type: 'string', value: 'N', description: `At most N events, 1-${MAX_LIMIT} (default: 100)` },
    json: { type: 'boolean', short: 'j', description: 'Print command result as JSON' },
  },
  run: audit,
};
