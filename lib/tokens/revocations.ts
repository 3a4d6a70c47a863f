import { SkyError } from '../errors';
import type { RevocationRecords, StoreEvent } from '../store';
import type { SkyClaims } from './jwt';

/** The maps of revoked ids are swept of expired ones whenever they double (and at least this big). */
const SWEEP_EVERY = 1024;
/** Verification accepts a token this long past its `exp` (the verifier's leeway). */
const LEEWAY_MS = 60_000;
/**
 * A refresh that passed its rotation just before its family ended may still sign a token a moment
 * later; a family's end is kept this much longer than the token lifetime so that token is covered too.
 */
const FAMILY_MARGIN_MS = 5 * 60_000;

export interface RevocationsOptions {
  /** How long after losing the store's events this node still trusts its copy (README: Redis outages). */
  graceMs?: number;
  /** The access-token lifetime: a family's end is kept until its last token could no longer verify. */
  tokenLifetimeMs: number;
}

/** An id → until-when map that forgets entries once they are past, swept when it doubles. */
class Expiring {
  private readonly until = new Map<string, number>();
  private sweepAt = SWEEP_EVERY;

  has(id: string): boolean {
    return this.until.has(id);
  }

  /** Keeps the later time: an earlier end arriving late never shortens one already known. */
  note(id: string, untilMs: number): void {
    if ((this.until.get(id) ?? 0) >= untilMs) return;
    this.until.set(id, untilMs);
    if (this.until.size < this.sweepAt) return;
    const now = Date.now();
    for (const [key, end] of this.until) if (end < now) this.until.delete(key);
    this.sweepAt = Math.max(SWEEP_EVERY, this.until.size * 2);
  }
}

/**
 * This node's view of every revocation (SPEC §8): loaded from the store at start, kept current by the
 * store's events, so checking a token costs three Map lookups and no round trip. A login is a family
 * (the JWT's `sid`): ending it refuses every token that login produced, whenever it was issued.
 */
export class Revocations {
  private readonly tokens = new Expiring();
  private readonly families = new Expiring();
  private readonly users = new Map<string, number>();
  /** When this node lost the store's events (null: it hears them). */
  private lostAt: number | null = null;
  private readonly graceMs: number;
  private readonly familyKeepMs: number;

  constructor(
    private readonly records: RevocationRecords,
    options: RevocationsOptions,
  ) {
    this.graceMs = options.graceMs ?? 30_000;
    this.familyKeepMs = options.tokenLifetimeMs + LEEWAY_MS + FAMILY_MARGIN_MS;
  }

  /** Merges what the store holds into this view: nothing this node already knew is forgotten. */
  async load(nowMs = Date.now()): Promise<void> {
    const { tokens, families, users } = await this.records.load(nowMs);
    for (const [jti, exp] of tokens) this.tokens.note(jti, exp);
    for (const [sid, until] of families) this.families.note(sid, until);
    for (const [sub, notBefore] of users) this.noteUser(sub, notBefore);
  }

  /** Feed every store event here; a resync reloads everything (events may have been missed). */
  handle(event: StoreEvent): Promise<void> | void {
    if (event.type === 'lost') this.lostAt ??= Date.now();
    else if (event.type === 'revoke-token') this.tokens.note(event.jti, event.exp);
    else if (event.type === 'revoke-family') this.families.note(event.sid, event.until);
    else if (event.type === 'revoke-user') this.noteUser(event.sub, event.notBefore);
    else if (event.type === 'resync') {
      this.lostAt = null;
      return this.load();
    }
  }

  private noteUser(sub: string, notBefore: number): void {
    this.users.set(sub, Math.max(this.users.get(sub) ?? 0, notBefore));
  }

  /** Past the grace of an outage, a revocation made elsewhere may be unknown here: refuse to judge (503). */
  assertCurrent(nowMs = Date.now()): void {
    if (this.lostAt !== null && nowMs - this.lostAt > this.graceMs) {
      throw new SkyError(
        'store_unavailable',
        `this node has not heard from Redis for ${Math.round((nowMs - this.lostAt) / 1000)} s: it cannot tell whether tokens were revoked`,
      );
    }
  }

  isRevoked(claims: Pick<SkyClaims, 'jti' | 'sid' | 'sub' | 'iat'>): boolean {
    if (this.tokens.has(claims.jti) || this.families.has(claims.sid)) return true;
    const notBefore = this.users.get(claims.sub);
    return notBefore !== undefined && claims.iat < notBefore;
  }

  /** Whether a login family has ended (a refresh must not issue from it). */
  isFamilyEnded(familyId: string): boolean {
    return this.families.has(familyId);
  }

  /**
   * Ends a login family on every node (logout, refresh-token reuse): every access token carrying its
   * `sid`, issued before or racing this call, is refused until none of them could verify any more.
   */
  async revokeFamily(familyId: string, nowMs = Date.now()): Promise<void> {
    const until = nowMs + this.familyKeepMs;
    this.families.note(familyId, until);
    await this.records.revokeFamily(familyId, until);
  }

  /** Revokes every token of a user issued up to now, on every node, in one write. */
  async revokeUser(sub: string, nowMs = Date.now()): Promise<void> {
    const notBefore = Math.floor(nowMs / 1000) + 1;
    this.noteUser(sub, notBefore);
    await this.records.revokeUser(sub, notBefore);
  }
}
