import { SkyError } from '../errors';
import type { RevocationRecords, StoreEvent } from '../store';
import type { SkyClaims } from './jwt';

/** The map of revoked ids is swept of expired ones whenever it doubles (and at least this big). */
const SWEEP_EVERY = 1024;

/**
 * This node's view of every revocation (SPEC §8): loaded from the store at start, kept current by the
 * store's events, so checking a token costs two Map lookups and no round trip.
 */
export class Revocations {
  private readonly tokens = new Map<string, number>();
  private readonly users = new Map<string, number>();
  private sweepAt = SWEEP_EVERY;
  /** When this node lost the store's events (null: it hears them). */
  private lostAt: number | null = null;

  /**
   * @param graceMs how long after losing the store's events this node still trusts its copy (revocations
   *   here, team configs in the TeamStore cache) before it answers 503 instead (README: Redis outages).
   */
  constructor(
    private readonly records: RevocationRecords,
    private readonly graceMs = 30_000,
  ) {}

  async load(nowMs = Date.now()): Promise<void> {
    const { tokens, users } = await this.records.load(nowMs);
    this.tokens.clear();
    this.users.clear();
    for (const [jti, exp] of tokens) this.tokens.set(jti, exp);
    for (const [sub, notBefore] of users) this.users.set(sub, notBefore);
  }

  /** Feed every store event here; a resync reloads everything (events may have been missed). */
  handle(event: StoreEvent): Promise<void> | void {
    if (event.type === 'lost') this.lostAt ??= Date.now();
    else if (event.type === 'revoke-token') this.noteToken(event.jti, event.exp);
    else if (event.type === 'revoke-user')
      this.users.set(event.sub, Math.max(this.users.get(event.sub) ?? 0, event.notBefore));
    else if (event.type === 'resync') {
      this.lostAt = null;
      return this.load();
    }
  }

  /** A revoked id is kept until its token expires: past that the token is refused anyway. */
  private noteToken(jti: string, expMs: number): void {
    this.tokens.set(jti, expMs);
    if (this.tokens.size < this.sweepAt) return;
    const now = Date.now();
    for (const [id, exp] of this.tokens) if (exp < now) this.tokens.delete(id);
    this.sweepAt = Math.max(SWEEP_EVERY, this.tokens.size * 2);
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

  isRevoked(claims: Pick<SkyClaims, 'jti' | 'sub' | 'iat'>): boolean {
    if (this.tokens.has(claims.jti)) return true;
    const notBefore = this.users.get(claims.sub);
    return notBefore !== undefined && claims.iat < notBefore;
  }

  /** Revokes one token on every node (logout). Applied locally at once, not only when the event returns. */
  async revokeToken(claims: Pick<SkyClaims, 'jti' | 'exp'>): Promise<void> {
    this.noteToken(claims.jti, claims.exp * 1000);
    await this.records.revokeToken(claims.jti, claims.exp * 1000);
  }

  /** Revokes every token of a user issued up to now, on every node, in one write. */
  async revokeUser(sub: string, nowMs = Date.now()): Promise<void> {
    const notBefore = Math.floor(nowMs / 1000) + 1;
    this.users.set(sub, Math.max(this.users.get(sub) ?? 0, notBefore));
    await this.records.revokeUser(sub, notBefore);
  }
}
