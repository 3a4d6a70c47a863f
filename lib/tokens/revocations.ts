import { CLOCK_MARGIN_MS, type Clock } from '../clock';
import { SkyError } from '../errors';
import type { RevocationCounts, RevocationCutoffs, RevocationRecords, StoreEvent } from '../store';
import type { SkyClaims } from './jwt';

/** The maps of revoked ids are swept of expired ones whenever they double (and at least this big). */
const SWEEP_EVERY = 1024;
/** Verification accepts a token this long past its `exp` (the verifier's leeway). */
const LEEWAY_MS = 60_000;
/**
 * A refresh that passed its rotation just before its family ended may still sign a token a moment
 * later (its upstream calls take up to half a minute); a family's end is kept this much longer than the
 * token lifetime (at most one more lifetime, for short ones) so that token is covered too.
 */
const FAMILY_MARGIN_MS = 5 * 60_000;

export interface RevocationsOptions {
  /** How long after losing the store's events this node still trusts its copy (README: Redis outages). */
  graceMs?: number;
  /** The access-token lifetime: a family's end is kept until its last token could no longer verify. */
  tokenLifetimeMs: number;
  /** The time the nodes agree on (Redis's). */
  clock: Clock;
  /** Told of each revocation this node makes (the metrics' count). */
  revoked?: (kind: 'family' | 'user') => void;
}

/** An id → until-when map that forgets entries once they are past, swept when it doubles. */
class Expiring {
  private readonly until = new Map<string, number>();
  private sweepAt = SWEEP_EVERY;

  has(id: string): boolean {
    return this.until.has(id);
  }

  /** Keeps the later time: an earlier end arriving late never shortens one already known. */
  note(id: string, untilMs: number, cutoffMs: number): void {
    if ((this.until.get(id) ?? 0) >= untilMs) return;
    this.until.set(id, untilMs);
    if (this.until.size < this.sweepAt) return;
    this.sweep(cutoffMs);
    this.sweepAt = Math.max(SWEEP_EVERY, this.until.size * 2);
  }

  sweep(cutoffMs: number): void {
    for (const [key, end] of this.until) if (end < cutoffMs) this.until.delete(key);
  }

  /** The entries still in force at the cutoff. */
  *live(cutoffMs: number): IterableIterator<[string, number]> {
    for (const entry of this.until) if (entry[1] >= cutoffMs) yield entry;
  }
}

const count = (entries: Iterable<unknown>): number => {
  let n = 0;
  for (const _ of entries) n++;
  return n;
};

/**
 * This node's view of every revocation (SPEC §8): loaded from the store at start, kept current by the
 * store's events, so checking a token costs three Map lookups and no round trip. A login is a family
 * (the JWT's `sid`): ending it refuses every token that login produced, whenever it was issued.
 *
 * Nothing comes back from the dead: the view only grows until an entry's tokens could no longer verify
 * (expiry + leeway + clock margin). A reload merges; when the store holds fewer revocations than this
 * node knows (Redis emptied, restarted without its data, evicted a key), `heal()` writes them back.
 */
export class Revocations {
  private readonly tokens = new Expiring();
  private readonly families = new Expiring();
  private readonly users = new Map<string, number>();
  /** When this node lost the store's events (null: it hears them). */
  private lostAt: number | null = null;
  private readonly graceMs: number;
  private readonly familyKeepMs: number;
  private readonly clock: Clock;
  /** A reconnect's merge has not succeeded yet: the node may be missing revocations made meanwhile. */
  private resyncPending = false;
  /** This node's revocation writes in flight ("f <sid>", "u <sub>") → how many. */
  private readonly writing = new Map<string, number>();

  constructor(
    private readonly records: RevocationRecords,
    private readonly options: RevocationsOptions,
  ) {
    this.graceMs = options.graceMs ?? 60_000;
    this.familyKeepMs =
      options.tokenLifetimeMs + LEEWAY_MS + Math.min(FAMILY_MARGIN_MS, options.tokenLifetimeMs);
    this.clock = options.clock;
  }

  /**
   * Below these, a revocation covers no token that could still verify: a family's end and a legacy
   * token's expiry past leeway and margin, a user's not-before older than a whole token lifetime more.
   */
  private cutoffs(nowMs = this.clock.now()): RevocationCutoffs {
    const families = nowMs - CLOCK_MARGIN_MS;
    return {
      families,
      tokens: families - LEEWAY_MS,
      users: Math.floor((families - LEEWAY_MS - this.options.tokenLifetimeMs) / 1000),
    };
  }

  /** Merges what the store holds into this view: nothing this node already knew is forgotten. */
  async load(): Promise<void> {
    const cut = this.cutoffs();
    const { tokens, families, users } = await this.records.load(cut);
    for (const [jti, exp] of tokens) this.tokens.note(jti, exp, cut.tokens);
    for (const [sid, until] of families) this.families.note(sid, until, cut.families);
    for (const [sub, notBefore] of users) this.noteUser(sub, notBefore);
  }

  /** Feed every store event here; a resync reloads everything (events may have been missed). */
  handle(event: StoreEvent): Promise<void> | void {
    if (event.type === 'lost') this.lostAt ??= Date.now();
    else if (event.type === 'revoke-token') this.tokens.note(event.jti, event.exp, this.cutoffs().tokens);
    else if (event.type === 'revoke-family')
      this.families.note(event.sid, event.until, this.cutoffs().families);
    else if (event.type === 'revoke-user') this.noteUser(event.sub, event.notBefore);
    else if (event.type === 'resync') return this.resync();
  }

  /**
   * After a reconnect: events may have been missed, so the view is merged with Redis again. Only a
   * merge that succeeded ends the outage; one that failed (the command connection may come back later
   * than the subscriber, as in a failover) is retried by `catchUp()`, and the grace keeps running.
   */
  private async resync(): Promise<void> {
    this.resyncPending = true;
    await this.load();
    this.resyncPending = false;
    this.lostAt = null;
  }

  /**
   * The store watch calls this every second. It retries a merge a reconnect could not make; and while
   * the node hears no events but Redis answers commands (the subscriber alone is down), it merges
   * anyway, so revocations made on other nodes reach it within a second, not when the channel is back.
   */
  async catchUp(): Promise<void> {
    if (this.resyncPending) await this.resync();
    else if (this.lostAt !== null) await this.load();
  }

  private noteUser(sub: string, notBefore: number): void {
    this.users.set(sub, Math.max(this.users.get(sub) ?? 0, notBefore));
  }

  /**
   * How many revocations in force this node knows, of each kind: what the store must hold at least.
   * Counted with a stricter cutoff (entries that end within two margins are left out: another node may
   * trim them by its own clock), and without this node's writes still in flight.
   */
  known(): RevocationCounts {
    const cut = this.cutoffs();
    this.tokens.sweep(cut.tokens);
    this.families.sweep(cut.families);
    for (const [sub, notBefore] of this.users) if (notBefore < cut.users) this.users.delete(sub);
    const strict = this.cutoffs(this.clock.now() + 2 * CLOCK_MARGIN_MS);
    let families = 0;
    for (const [sid] of this.families.live(strict.families)) if (!this.writing.has(`f ${sid}`)) families++;
    let users = 0;
    for (const [sub, notBefore] of this.users) {
      if (notBefore >= strict.users && !this.writing.has(`u ${sub}`)) users++;
    }
    return { tokens: count(this.tokens.live(strict.tokens)), families, users };
  }

  /** Runs one of this node's writes, known as in flight meanwhile (a failed one is left for heal()). */
  private async write(id: string, work: () => Promise<void>): Promise<void> {
    this.writing.set(id, (this.writing.get(id) ?? 0) + 1);
    try {
      await work();
    } finally {
      const left = (this.writing.get(id) ?? 1) - 1;
      if (left === 0) this.writing.delete(id);
      else this.writing.set(id, left);
    }
  }

  /**
   * Whether the store may have lost revocations this node knows: it holds fewer of some kind. Cheap
   * (three counts), so every node runs it every second.
   */
  async storeLost(): Promise<boolean> {
    const stored = await this.records.counts();
    const known = this.known();
    return stored.tokens < known.tokens || stored.families < known.families || stored.users < known.users;
  }

  /**
   * Writes back every revocation in force that this node knows and the store lacks (after merging
   * what the store has). Resolves how many it wrote; every node hears them as if they were new.
   */
  async heal(): Promise<number> {
    const cut = this.cutoffs();
    const stored = await this.records.load(cut);
    const storedFamilies = new Map(stored.families);
    const storedUsers = new Map(stored.users);
    const storedTokens = new Set(stored.tokens.map(([id]) => id));
    for (const [jti, exp] of stored.tokens) this.tokens.note(jti, exp, cut.tokens);
    for (const [sid, until] of stored.families) this.families.note(sid, until, cut.families);
    for (const [sub, notBefore] of stored.users) this.noteUser(sub, notBefore);
    let written = 0;
    for (const [sid, until] of this.families.live(cut.families)) {
      if ((storedFamilies.get(sid) ?? 0) >= until) continue;
      await this.write(`f ${sid}`, () => this.records.revokeFamily(sid, until));
      written++;
    }
    for (const [sub, notBefore] of this.users) {
      if ((storedUsers.get(sub) ?? 0) >= notBefore) continue;
      await this.write(`u ${sub}`, () => this.records.revokeUser(sub, notBefore));
      written++;
    }
    // A legacy token id ends its family's worth of access: written back as a family of its own id
    // would not match (ids differ), so it goes back into the legacy set.
    for (const [jti, exp] of this.tokens.live(cut.tokens)) {
      if (storedTokens.has(jti)) continue;
      await this.records.restoreToken(jti, exp);
      written++;
    }
    return written;
  }

  /** Past the grace of an outage, a revocation made elsewhere may be unknown here: refuse to judge (503). */
  /**
   * Since when this node has been cut off from the store's events, answering from its copies (null: it
   * hears them, and its last reconnect's merge succeeded). Revocations other nodes make meanwhile reach
   * it only when it is back: readiness says degraded until then.
   */
  cutOffSince(): number | null {
    return this.lostAt;
  }

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
   * Known here first: should the write fail, this node still refuses them, and heal() retries it.
   * `until`: when nothing of the family could verify any more (an automation token: its expiry).
   */
  async revokeFamily(familyId: string, until = this.clock.now() + this.familyKeepMs): Promise<void> {
    this.families.note(familyId, until, this.cutoffs().families);
    this.options.revoked?.('family');
    await this.write(`f ${familyId}`, () => this.records.revokeFamily(familyId, until));
  }

  /**
   * Revokes every token of a user issued up to now, on every node, in one write. The not-before is
   * the margin later than now: a node whose corrected clock runs that much ahead is still covered.
   */
  async revokeUser(sub: string): Promise<void> {
    const notBefore = Math.ceil((this.clock.now() + CLOCK_MARGIN_MS) / 1000);
    this.noteUser(sub, notBefore);
    this.options.revoked?.('user');
    await this.write(`u ${sub}`, () => this.records.revokeUser(sub, notBefore));
  }
}
