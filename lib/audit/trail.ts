/**
 * The audit trail (README "Audit trail"): one event for each change to who may do what, and for each
 * login, written as one structured log line (the event under `audit`) and appended to a Redis Stream bounded by
 * SKY_AUDIT_MAX_EVENTS and SKY_AUDIT_RETENTION. An event names who acted, what, on which team, when,
 * the request id and the node; it never holds a secret (no token, password or code is ever passed in).
 */
import { hostname } from 'node:os';
import type { Clock } from '../clock';
import type { Logger } from '../log';
import type { AuditRecords } from '../store';
import type { SkyClaims } from '../tokens';

export type AuditAction =
  | 'team.create'
  | 'team.update'
  | 'team.delete'
  | 'login.success'
  | 'login.refusal'
  | 'logout'
  | 'family.end'
  | 'user.revoke'
  | 'token.create'
  | 'token.revoke'
  | 'token.expire'
  | 'password.failure';

/** Who acted: a person (subject, name, connector), sky itself, or someone it could not name. */
export type AuditActor =
  | { sub: string; name: string; connector: string }
  | { system: true }
  /** A refused login of someone sky could not name. */
  | { anonymous: true };

/** The person a token stands for, as events name them. */
export const personActor = (claims: Pick<SkyClaims, 'sub' | 'name' | 'connector'>): AuditActor => ({
  sub: claims.sub,
  name: claims.name,
  connector: claims.connector,
});

export interface AuditInput {
  action: AuditAction;
  actor: AuditActor;
  team?: string | null;
  requestId?: string | undefined;
  /** What changed or why: the per-role difference, a refusal's reason, a token's name and role. */
  detail?: Record<string, unknown>;
}

/** An event as stored and as `GET /api/v1/audit` answers it. */
export interface AuditEvent {
  id: string;
  time: string;
  action: AuditAction;
  actor: AuditActor;
  team: string | null;
  request_id: string | null;
  node: string;
  detail: Record<string, unknown>;
}

export interface AuditTrailOptions {
  records: AuditRecords;
  log: Logger;
  clock: Clock;
  retentionMs: number;
  maxEvents: number;
}

/** This node's name in events: host and process id (several nodes may share a host). */
const NODE = `${hostname()}:${process.pid}`;

export class AuditTrail {
  constructor(private readonly options: AuditTrailOptions) {}

  /**
   * Records one event: the log line always, the stream when Redis takes it. A failed append is logged
   * and does not undo or fail the action it records (that has happened already).
   */
  async record(input: AuditInput): Promise<void> {
    const now = this.options.clock.now();
    const event: Omit<AuditEvent, 'id'> = {
      time: new Date(now).toISOString(),
      action: input.action,
      actor: input.actor,
      team: input.team ?? null,
      request_id: input.requestId ?? null,
      node: NODE,
      detail: input.detail ?? {},
    };
    // Nested: the event's `time` must not replace the log line's own.
    this.options.log.info({ audit: event }, `audit: ${input.action}`);
    try {
      await this.options.records.append(
        JSON.stringify(event),
        this.options.maxEvents,
        now - this.options.retentionMs,
      );
    } catch (err) {
      this.options.log.warn(
        { err: (err as Error).message, action: input.action },
        'could not append to the audit trail',
      );
    }
  }

  /**
   * Events newest first, not older than `sinceMs`, at most `limit`, of the teams `visible` accepts
   * (an owner's teams; every event for an admin). Reads in pages until `limit` are found.
   */
  async read(sinceMs: number, limit: number, visible: (event: AuditEvent) => boolean): Promise<AuditEvent[]> {
    const found: AuditEvent[] = [];
    let before: string | null = null;
    const oldest = Math.max(sinceMs, this.options.clock.now() - this.options.retentionMs);
    for (;;) {
      const page = await this.options.records.read(oldest, before, 500);
      for (const [id, json] of page) {
        const event = parseEvent(id, json);
        if (event && visible(event)) found.push(event);
        if (found.length >= limit) return found;
      }
      if (page.length < 500) return found;
      before = (page[page.length - 1] as [string, string])[0];
    }
  }
}

function parseEvent(id: string, json: string): AuditEvent | null {
  try {
    const value = JSON.parse(json) as Omit<AuditEvent, 'id'>;
    return typeof value === 'object' && value !== null && typeof value.action === 'string'
      ? { id, ...value }
      : null;
  } catch {
    return null;
  }
}
