import { TTLCache } from '@isaacs/ttlcache';
import { Store as SessionStore, type SessionData } from 'express-session';
import type { StoreEvent, StoreEventListener } from './events';
import {
  lossMark,
  type AuditRecords,
  type AutomationTokenRecords,
  type FamilyState,
  type GrantRecords,
  type LossMarks,
  type Principals,
  type RateLimitRecords,
  type RevocationCounts,
  type RevocationCutoffs,
  type RevocationRecords,
  type RevocationSnapshot,
  type SingleUseRecords,
  type Store,
  type TeamRecords,
  type WriteMode,
  type WriteOutcome,
} from './records';

/** The embedded store, which can also say how much it holds (what its tests watch return to the start). */
export interface EmbeddedStore extends Store {
  readonly kind: 'memory';
  /** Entries held: records, index entries and sessions, counting nothing past its TTL (it is freed then). */
  size(): number;
}

export interface EmbeddedStoreOptions {
  /** How long a session whose cookie has no expiry lives (the Redis store's session TTL); default 24 h. */
  sessionTtlSeconds?: number;
}

/** The embedded default (SPEC §2): the same records in process memory, for a single node. */
export function createMemoryStore({
  sessionTtlSeconds = 24 * 3600,
}: EmbeddedStoreOptions = {}): EmbeddedStore {
  const listeners = new Set<StoreEventListener>();
  const emit = (event: StoreEvent): void => {
    // Asynchronous like pub/sub, so callers never depend on hearing their own write synchronously.
    queueMicrotask(() => {
      for (const listener of listeners) listener(event);
    });
  };
  const teams = new MemoryTeamRecords(emit);
  const revocations = new MemoryRevocationRecords(emit);
  const grants = new MemoryGrantRecords(emit);
  const rateLimits = new MemoryRateLimitRecords();
  const singleUse = new MemorySingleUseRecords();
  const automationTokens = new MemoryAutomationTokenRecords(emit);
  const audit = new MemoryAuditRecords();
  const sessions = new MemorySessionStore(sessionTtlSeconds);
  const lossMarks: LossMarks = {};
  const parts = [teams, revocations, grants, rateLimits, singleUse, automationTokens, audit, sessions];
  return {
    kind: 'memory',
    ready: Promise.resolve(),
    start: () => Promise.resolve(),
    requirements: () => Promise.resolve({ problems: [], unchecked: [], replicas: 0 }),
    clockReading: () => null,
    reportLoss: (kind) => {
      const mark = lossMark();
      lossMarks[kind] = mark;
      emit({ type: 'data-loss', kind });
      return Promise.resolve(mark);
    },
    lossMarks: () => Promise.resolve({ ...lossMarks }),
    teams,
    revocations,
    grants,
    rateLimits,
    singleUse,
    automationTokens,
    audit,
    sessions,
    size: () => parts.reduce((sum, part) => sum + part.size(), 0),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      listeners.clear();
      // Each cache's expiry timer holds it (and so the store) until its next expiry: drop them now.
      for (const part of parts) part.clear();
    },
  };
}

/**
 * Entries that die at their TTL as Redis keys do: a read never sees one past it, and a timer frees it
 * then, so a long-running node's heap holds only what is live.
 */
function expiring<K, V>(dispose?: (value: V) => void): TTLCache<K, V> {
  return new TTLCache<K, V>({
    checkAgeOnGet: true,
    checkAgeOnHas: true,
    noDisposeOnSet: true, // a value written again is not removed: `dispose` hears removals only
    ...(dispose ? { dispose } : {}),
  });
}

/** A TTL in whole milliseconds, at least one (the cache's unit; Redis rounds PX the same way). */
const ttl = (ms: number): { ttl: number } => ({ ttl: Math.max(1, Math.ceil(ms)) });

class MemoryTeamRecords implements TeamRecords {
  private readonly configs = new Map<string, { json: string; principals: Principals }>();
  private readonly index = new Map<string, Set<string>>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

  size(): number {
    return this.configs.size + this.index.size;
  }

  clear(): void {
    this.configs.clear();
    this.index.clear();
  }

  async get(team: string): Promise<string | null> {
    return this.configs.get(team)?.json ?? null;
  }

  async all(): Promise<Map<string, string>> {
    return new Map([...this.configs].map(([team, record]) => [team, record.json]));
  }

  async findByPrincipals(principals: Principals): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    for (const key of indexKeys(principals)) {
      for (const team of this.index.get(key) ?? []) {
        const record = this.configs.get(team);
        if (record) found.set(team, record.json);
      }
    }
    return found;
  }

  async put(team: string, json: string, principals: Principals, mode: WriteMode): Promise<WriteOutcome> {
    const previous = this.configs.get(team);
    if (!previous && mode === 'update') return 'missing';
    if (previous) this.unindex(team, previous.principals);
    this.configs.set(team, { json, principals });
    for (const key of indexKeys(principals)) {
      let teams = this.index.get(key);
      if (!teams) this.index.set(key, (teams = new Set()));
      teams.add(team);
    }
    this.emit({ type: 'team', team, config: json });
    return previous === undefined ? 'created' : 'updated';
  }

  async delete(team: string): Promise<boolean> {
    const previous = this.configs.get(team);
    if (!previous) return false;
    this.unindex(team, previous.principals);
    this.configs.delete(team);
    this.emit({ type: 'team', team, config: null });
    return true;
  }

  private unindex(team: string, principals: Principals): void {
    for (const key of indexKeys(principals)) {
      const teams = this.index.get(key);
      teams?.delete(team);
      if (teams?.size === 0) this.index.delete(key);
    }
  }
}

function indexKeys({ users, groups }: Principals): string[] {
  return [...users.map((u) => `u:${u}`), ...groups.map((g) => `g:${g}`)];
}

/** Kept until load() is given a cutoff past them, as the Redis store's sets (no TTL: see RevocationRecords). */
class MemoryRevocationRecords implements RevocationRecords {
  private readonly tokens = new Map<string, number>();
  private readonly families = new Map<string, number>();
  private readonly users = new Map<string, number>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

  size(): number {
    return this.tokens.size + this.families.size + this.users.size;
  }

  clear(): void {
    for (const map of [this.tokens, this.families, this.users]) map.clear();
  }

  async revokeFamily(familyId: string, untilMs: number): Promise<void> {
    const until = Math.max(this.families.get(familyId) ?? 0, untilMs);
    this.families.set(familyId, until);
    this.emit({ type: 'revoke-family', sid: familyId, until });
  }

  async revokeUser(sub: string, notBefore: number): Promise<void> {
    const effective = Math.max(this.users.get(sub) ?? 0, notBefore);
    this.users.set(sub, effective);
    this.emit({ type: 'revoke-user', sub, notBefore: effective });
  }

  async restoreToken(jti: string, expMs: number): Promise<void> {
    this.tokens.set(jti, Math.max(this.tokens.get(jti) ?? 0, expMs));
  }

  async load(cut: RevocationCutoffs): Promise<RevocationSnapshot> {
    for (const [map, below] of [
      [this.tokens, cut.tokens],
      [this.families, cut.families],
      [this.users, cut.users],
    ] as const) {
      for (const [id, until] of map) if (until < below) map.delete(id);
    }
    return { tokens: [...this.tokens], families: [...this.families], users: [...this.users] };
  }

  async counts(): Promise<RevocationCounts> {
    return { tokens: this.tokens.size, families: this.families.size, users: this.users.size };
  }
}

/** Each user's member ids (families or sessions), each dying at its own TTL: the Redis store's sorted sets. */
class UserIndex {
  private readonly bySub = new Map<string, Set<string>>();
  private readonly members = expiring<string, { sub: string; id: string }>(({ sub, id }) => {
    const ids = this.bySub.get(sub);
    ids?.delete(id);
    if (ids?.size === 0) this.bySub.delete(sub);
  });

  size(): number {
    return this.members.size + this.bySub.size;
  }

  clear(): void {
    this.members.clear();
    this.bySub.clear();
  }

  add(sub: string, id: string, ttlMs: number): void {
    this.members.set(JSON.stringify([sub, id]), { sub, id }, ttl(ttlMs));
    const ids = this.bySub.get(sub) ?? new Set<string>();
    this.bySub.set(sub, ids.add(id));
  }

  remove(sub: string, id: string): void {
    this.members.delete(JSON.stringify([sub, id]));
  }

  /** The user's live ids, removed. */
  take(sub: string): string[] {
    const ids = [...(this.bySub.get(sub) ?? [])].filter((id) => this.members.has(JSON.stringify([sub, id])));
    for (const id of ids) this.remove(sub, id);
    return ids;
  }
}

/** How many spent refresh tokens a family remembers for reuse detection (as the Redis store). */
const SPENT_KEPT = 16;

interface Family {
  sub: string;
  hash: string;
  /** The last SPENT_KEPT tokens it spent, oldest first. */
  used: string[];
}

class MemoryGrantRecords implements GrantRecords {
  private readonly upstreams = expiring<string, string>();
  /** A family's TTL is its absolute lifetime: rotations change the record in place, never the TTL. */
  private readonly families = expiring<string, Family>();
  private readonly userFamilies = new UserIndex();
  private readonly sessions = new UserIndex();
  private readonly locks = expiring<string, string>();
  private readonly groupRecords = expiring<string, { groups: string[]; readAt: number }>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

  private get parts(): { size: number; clear(): void }[] {
    return [this.upstreams, this.families, this.locks, this.groupRecords];
  }

  size(): number {
    return (
      this.parts.reduce((sum, cache) => sum + cache.size, 0) + this.userFamilies.size() + this.sessions.size()
    );
  }

  clear(): void {
    for (const cache of this.parts) cache.clear();
    this.userFamilies.clear();
    this.sessions.clear();
  }

  async upstream(sub: string): Promise<string | null> {
    return this.upstreams.get(sub) ?? null;
  }

  async saveUpstream(sub: string, sealed: string, ttlSeconds: number): Promise<void> {
    this.upstreams.set(sub, sealed, ttl(ttlSeconds * 1000));
  }

  async createFamily(sub: string, familyId: string, tokenHash: string, ttlSeconds: number): Promise<void> {
    this.families.set(familyId, { sub, hash: tokenHash, used: [] }, ttl(ttlSeconds * 1000));
    this.userFamilies.add(sub, familyId, ttlSeconds * 1000);
  }

  async inspect(familyId: string, tokenHash: string): Promise<{ state: FamilyState; sub?: string }> {
    const family = this.families.get(familyId);
    if (!family) return { state: 'unknown' };
    if (family.hash === tokenHash) return { state: 'current', sub: family.sub };
    // Only a spent token is reuse; anything else is unknown and ends nothing (as the Redis script).
    if (!family.used.includes(tokenHash)) return { state: 'unknown' };
    this.families.delete(familyId);
    return { state: 'reused', sub: family.sub };
  }

  async rotate(familyId: string, tokenHash: string, nextHash: string): Promise<FamilyState> {
    const family = this.families.get(familyId);
    const { state } = await this.inspect(familyId, tokenHash);
    if (state === 'current' && family) {
      family.used = [...family.used, tokenHash].slice(-SPENT_KEPT);
      family.hash = nextHash;
    }
    return state;
  }

  async endFamily(familyId: string): Promise<void> {
    const family = this.families.get(familyId);
    this.families.delete(familyId);
    if (family) this.userFamilies.remove(family.sub, familyId);
  }

  async rememberSession(sub: string, sessionId: string, ttlSeconds: number): Promise<void> {
    this.sessions.add(sub, sessionId, ttlSeconds * 1000);
  }

  async forgetSession(sub: string, sessionId: string): Promise<void> {
    this.sessions.remove(sub, sessionId);
  }

  async forgetUser(sub: string): Promise<string[]> {
    for (const id of this.userFamilies.take(sub)) this.families.delete(id);
    this.upstreams.delete(sub);
    return this.sessions.take(sub);
  }

  async saveGroups(
    sub: string,
    record: { groups: string[]; readAt: number },
    ttlSeconds: number,
  ): Promise<void> {
    this.groupRecords.set(sub, record, ttl(ttlSeconds * 1000));
    this.emit({ type: 'groups', sub, ...record });
  }

  async groups(sub: string): Promise<{ groups: string[]; readAt: number } | null> {
    return this.groupRecords.get(sub) ?? null;
  }

  async lock(sub: string, owner: string, ttlMs: number): Promise<boolean> {
    if (this.locks.has(sub)) return false;
    this.locks.set(sub, owner, ttl(ttlMs));
    return true;
  }

  async unlock(sub: string, owner: string): Promise<void> {
    if (this.locks.get(sub) === owner) this.locks.delete(sub);
  }

  async renew(sub: string, owner: string, ttlMs: number): Promise<boolean> {
    if (this.locks.get(sub) !== owner) return false;
    this.locks.set(sub, owner, ttl(ttlMs));
    return true;
  }
}

class MemoryRateLimitRecords implements RateLimitRecords {
  /** Each window's count, dying when the window ends. */
  private readonly windows = expiring<string, { count: number }>();

  size(): number {
    return this.windows.size;
  }

  clear(): void {
    this.windows.clear();
  }

  async hit(bucket: string, windowMs: number): Promise<{ count: number; resetMs: number }> {
    let window = this.windows.get(bucket);
    if (!window) this.windows.set(bucket, (window = { count: 0 }), ttl(windowMs));
    window.count++;
    return { count: window.count, resetMs: this.windows.getRemainingTTL(bucket) };
  }

  async peek(bucket: string): Promise<{ count: number; resetMs: number }> {
    const window = this.windows.get(bucket);
    return window
      ? { count: window.count, resetMs: this.windows.getRemainingTTL(bucket) }
      : { count: 0, resetMs: 0 };
  }
}

class MemorySingleUseRecords implements SingleUseRecords {
  private readonly values = expiring<string, string>();

  size(): number {
    return this.values.size;
  }

  clear(): void {
    this.values.clear();
  }

  async put(id: string, value: string, ttlMs: number): Promise<boolean> {
    if (this.values.has(id)) return false;
    this.values.set(id, value, ttl(ttlMs));
    return true;
  }

  async take(id: string): Promise<string | null> {
    const value = this.values.get(id) ?? null;
    this.values.delete(id);
    return value;
  }
}

class MemoryAutomationTokenRecords implements AutomationTokenRecords {
  private readonly records = new Map<string, string>();
  /** Team → name → id. */
  private readonly byTeam = new Map<string, Map<string, string>>();
  private readonly uses = new Map<string, number>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

  size(): number {
    return this.records.size + this.byTeam.size + this.uses.size;
  }

  clear(): void {
    for (const map of [this.records, this.byTeam, this.uses]) map.clear();
  }

  async create(team: string, name: string, id: string, json: string): Promise<boolean> {
    const names = this.byTeam.get(team) ?? new Map<string, string>();
    if (names.has(name)) return false;
    this.byTeam.set(team, names.set(name, id));
    this.records.set(id, json);
    this.emit({ type: 'automation-token', id });
    return true;
  }

  async get(id: string): Promise<string | null> {
    return this.records.get(id) ?? null;
  }

  async list(team: string): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    for (const [name, id] of this.byTeam.get(team) ?? []) {
      const json = this.records.get(id);
      if (json !== undefined) found.set(name, json);
    }
    return found;
  }

  async remove(team: string, name: string): Promise<string | null> {
    const names = this.byTeam.get(team);
    const id = names?.get(name);
    if (!names || id === undefined) return null;
    const json = this.records.get(id) ?? '';
    names.delete(name);
    if (names.size === 0) this.byTeam.delete(team);
    this.records.delete(id);
    this.uses.delete(id);
    this.emit({ type: 'automation-token', id });
    return json;
  }

  async teams(): Promise<string[]> {
    return [...this.byTeam.keys()];
  }

  async touch(uses: Map<string, number>): Promise<void> {
    // As the Redis hash: a use of a token removed meanwhile is dropped with it there by the next sweep.
    for (const [id, ms] of uses) if (this.records.has(id)) this.uses.set(id, ms);
  }

  async lastUsed(ids: string[]): Promise<(number | null)[]> {
    return ids.map((id) => this.uses.get(id) ?? null);
  }
}

/** Stream ids as Redis makes them: `<ms>-<seq>`, increasing. */
class MemoryAuditRecords implements AuditRecords {
  private events: [string, string][] = [];
  private last = { ms: 0, seq: 0 };

  size(): number {
    return this.events.length;
  }

  clear(): void {
    this.events = [];
  }

  async append(json: string, maxEvents: number, oldestMs: number): Promise<string> {
    const now = Date.now();
    this.last = now > this.last.ms ? { ms: now, seq: 0 } : { ms: this.last.ms, seq: this.last.seq + 1 };
    const id = `${this.last.ms}-${this.last.seq}`;
    this.events.push([id, json]);
    const first = this.events.findIndex(([at]) => msOf(at) >= oldestMs);
    this.events = this.events.slice(
      Math.max(first === -1 ? this.events.length : first, this.events.length - maxEvents),
    );
    return id;
  }

  async read(sinceMs: number, before: string | null, count: number): Promise<[string, string][]> {
    const out: [string, string][] = [];
    for (let i = this.events.length - 1; i >= 0 && out.length < count; i--) {
      const event = this.events[i] as [string, string];
      if (before !== null && !idBefore(event[0], before)) continue;
      if (msOf(event[0]) < sinceMs) break;
      out.push(event);
    }
    return out;
  }
}

const msOf = (id: string): number => Number(id.split('-')[0]);
const idBefore = (a: string, b: string): boolean => {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am < bm || (am === bm && as < bs);
};

type Callback<T = unknown> = (err?: unknown, data?: T) => void;

/**
 * express-session records with connect-redis's TTLs (the Redis store's): until the cookie's expiry, or
 * `ttlSeconds` for a cookie without one; `touch` moves the expiry. express-session's own MemoryStore
 * keeps cookie-less sessions forever and frees expired ones only when asked.
 */
class MemorySessionStore extends SessionStore {
  private readonly records = expiring<string, string>();

  constructor(private readonly ttlSeconds: number) {
    super();
  }

  size(): number {
    return this.records.size;
  }

  override clear(callback?: Callback): void {
    this.records.clear();
    callback?.();
  }

  private ttlMs(session: SessionData): number {
    const expires = session.cookie?.expires;
    return expires ? new Date(expires).getTime() - Date.now() : this.ttlSeconds * 1000;
  }

  get(sid: string, callback: Callback<SessionData | null>): void {
    const json = this.records.get(sid);
    callback(null, json === undefined ? null : (JSON.parse(json) as SessionData));
  }

  set(sid: string, session: SessionData, callback?: Callback): void {
    const ms = this.ttlMs(session);
    if (ms > 0) this.records.set(sid, JSON.stringify(session), ttl(ms));
    else this.records.delete(sid);
    callback?.();
  }

  override touch(sid: string, session: SessionData, callback?: () => void): void {
    const ms = this.ttlMs(session);
    if (ms <= 0) this.records.delete(sid);
    else if (this.records.has(sid)) this.records.setTTL(sid, Math.max(1, Math.ceil(ms)));
    callback?.();
  }

  destroy(sid: string, callback?: Callback): void {
    this.records.delete(sid);
    callback?.();
  }

  override length(callback: Callback<number>): void {
    callback(null, [...this.records.keys()].filter((id) => this.records.has(id)).length);
  }

  /** Every live session, each with its `id` (as connect-redis lists them). */
  override all(callback: Callback<SessionData[]>): void {
    const sessions: SessionData[] = [];
    for (const id of [...this.records.keys()]) {
      const json = this.records.get(id);
      if (json !== undefined) sessions.push({ ...(JSON.parse(json) as SessionData), id } as SessionData);
    }
    callback(null, sessions);
  }
}
