import { MemoryStore } from 'express-session';
import type { StoreEvent, StoreEventListener } from './events';
import type {
  FamilyState,
  GrantRecords,
  Principals,
  RateLimitRecords,
  RevocationRecords,
  RevocationSnapshot,
  SingleUseRecords,
  Store,
  TeamRecords,
  WriteMode,
  WriteOutcome,
} from './records';

/** The embedded default (SPEC §2): the same records in process memory, for a single node. */
export function createMemoryStore(): Store {
  const listeners = new Set<StoreEventListener>();
  const emit = (event: StoreEvent): void => {
    // Asynchronous like pub/sub, so callers never depend on hearing their own write synchronously.
    queueMicrotask(() => {
      for (const listener of listeners) listener(event);
    });
  };
  return {
    kind: 'memory',
    ready: Promise.resolve(),
    start: () => Promise.resolve(),
    teams: new MemoryTeamRecords(emit),
    revocations: new MemoryRevocationRecords(emit),
    grants: new MemoryGrantRecords(emit),
    rateLimits: new MemoryRateLimitRecords(),
    singleUse: new MemorySingleUseRecords(),
    sessions: new MemoryStore(),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      listeners.clear();
    },
  };
}

class MemoryTeamRecords implements TeamRecords {
  private readonly configs = new Map<string, { json: string; principals: Principals }>();
  private readonly index = new Map<string, Set<string>>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

  async get(team: string): Promise<string | null> {
    return this.configs.get(team)?.json ?? null;
  }

  async all(): Promise<Map<string, string>> {
    return new Map([...this.configs].map(([team, record]) => [team, record.json]));
  }

  async findByPrincipals({ users, groups }: Principals): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    for (const key of [...users.map((u) => `u:${u}`), ...groups.map((g) => `g:${g}`)]) {
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
    this.emit({ type: 'team', team });
    return previous === undefined ? 'created' : 'updated';
  }

  async delete(team: string): Promise<boolean> {
    const previous = this.configs.get(team);
    if (!previous) return false;
    this.unindex(team, previous.principals);
    this.configs.delete(team);
    this.emit({ type: 'team', team });
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

class MemoryRevocationRecords implements RevocationRecords {
  private readonly families = new Map<string, number>();
  private readonly users = new Map<string, number>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

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

  async load(nowMs: number): Promise<RevocationSnapshot> {
    for (const [id, until] of this.families) if (until <= nowMs) this.families.delete(id);
    // Revoked token ids are what Redis may still hold from before families; memory starts empty.
    return { tokens: [], families: [...this.families], users: [...this.users] };
  }
}

/** A value with the time it dies (epoch ms), like a Redis key with a TTL. */
interface Expiring<T> {
  value: T;
  expiresAt: number;
}

class MemoryGrantRecords implements GrantRecords {
  private readonly upstreams = new Map<string, Expiring<string>>();
  private readonly families = new Map<string, Expiring<{ sub: string; hash: string; used: Set<string> }>>();
  private readonly userFamilies = new Map<string, Set<string>>();
  private readonly sessions = new Map<string, Set<string>>();
  private readonly locks = new Map<string, Expiring<string>>();
  private readonly groupRecords = new Map<string, Expiring<{ groups: string[]; readAt: number }>>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

  private live<T>(map: Map<string, Expiring<T>>, key: string): T | undefined {
    const entry = map.get(key);
    if (entry && entry.expiresAt <= Date.now()) map.delete(key);
    return entry && entry.expiresAt > Date.now() ? entry.value : undefined;
  }

  async upstream(sub: string): Promise<string | null> {
    return this.live(this.upstreams, sub) ?? null;
  }

  async saveUpstream(sub: string, sealed: string, ttlSeconds: number): Promise<void> {
    this.upstreams.set(sub, { value: sealed, expiresAt: Date.now() + ttlSeconds * 1000 });
  }

  async createFamily(sub: string, familyId: string, tokenHash: string, ttlSeconds: number): Promise<void> {
    this.families.set(familyId, {
      value: { sub, hash: tokenHash, used: new Set() },
      expiresAt: Date.now() + ttlSeconds * 1000,
    });
    const ids = this.userFamilies.get(sub) ?? new Set<string>();
    // Forget ids whose family expired, so a long-lived node does not collect them.
    for (const id of ids) if (!this.live(this.families, id)) ids.delete(id);
    this.userFamilies.set(sub, ids.add(familyId));
  }

  async inspect(familyId: string, tokenHash: string): Promise<{ state: FamilyState; sub?: string }> {
    const family = this.live(this.families, familyId);
    if (!family) return { state: 'unknown' };
    if (family.hash === tokenHash) return { state: 'current', sub: family.sub };
    // Only a spent token is reuse; anything else is unknown and ends nothing (as the Redis script).
    if (!family.used.has(tokenHash)) return { state: 'unknown' };
    this.families.delete(familyId);
    return { state: 'reused', sub: family.sub };
  }

  async rotate(familyId: string, tokenHash: string, nextHash: string): Promise<FamilyState> {
    const { state } = await this.inspect(familyId, tokenHash);
    const family = this.families.get(familyId);
    if (state === 'current' && family) {
      family.value.used.add(tokenHash);
      family.value.hash = nextHash;
    }
    return state;
  }

  async endFamily(familyId: string): Promise<void> {
    this.families.delete(familyId);
  }

  async rememberSession(sub: string, sessionId: string): Promise<void> {
    this.sessions.set(sub, (this.sessions.get(sub) ?? new Set<string>()).add(sessionId));
  }

  async forgetUser(sub: string): Promise<string[]> {
    for (const id of this.userFamilies.get(sub) ?? []) this.families.delete(id);
    const sessions = [...(this.sessions.get(sub) ?? [])];
    this.userFamilies.delete(sub);
    this.sessions.delete(sub);
    this.upstreams.delete(sub);
    return sessions;
  }

  async saveGroups(
    sub: string,
    record: { groups: string[]; readAt: number },
    ttlSeconds: number,
  ): Promise<void> {
    this.groupRecords.set(sub, { value: record, expiresAt: Date.now() + ttlSeconds * 1000 });
    this.emit({ type: 'groups', sub, ...record });
  }

  async groups(sub: string): Promise<{ groups: string[]; readAt: number } | null> {
    return this.live(this.groupRecords, sub) ?? null;
  }

  async lock(sub: string, owner: string, ttlMs: number): Promise<boolean> {
    if (this.live(this.locks, sub) !== undefined) return false;
    this.locks.set(sub, { value: owner, expiresAt: Date.now() + ttlMs });
    return true;
  }

  async unlock(sub: string, owner: string): Promise<void> {
    if (this.live(this.locks, sub) === owner) this.locks.delete(sub);
  }
}

class MemoryRateLimitRecords implements RateLimitRecords {
  private readonly windows = new Map<string, { count: number; endsAt: number }>();

  async hit(bucket: string, windowMs: number): Promise<{ count: number; resetMs: number }> {
    const now = Date.now();
    let window = this.windows.get(bucket);
    if (!window || window.endsAt <= now) {
      // Dropping ended windows as new ones start keeps the map as small as the clients of one window.
      if (this.windows.size > 10_000)
        for (const [k, w] of this.windows) if (w.endsAt <= now) this.windows.delete(k);
      window = { count: 0, endsAt: now + windowMs };
      this.windows.set(bucket, window);
    }
    window.count++;
    return { count: window.count, resetMs: window.endsAt - now };
  }

  async peek(bucket: string): Promise<{ count: number; resetMs: number }> {
    const now = Date.now();
    const window = this.windows.get(bucket);
    return window && window.endsAt > now
      ? { count: window.count, resetMs: window.endsAt - now }
      : { count: 0, resetMs: 0 };
  }
}

/** Swept of expired values whenever it doubles, so the map never holds more than twice what is live. */
class MemorySingleUseRecords implements SingleUseRecords {
  private readonly values = new Map<string, Expiring<string>>();
  private sweepAt = 1024;

  async put(id: string, value: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const existing = this.values.get(id);
    if (existing && existing.expiresAt > now) return false;
    this.values.set(id, { value, expiresAt: now + ttlMs });
    if (this.values.size >= this.sweepAt) {
      for (const [key, entry] of this.values) if (entry.expiresAt <= now) this.values.delete(key);
      this.sweepAt = Math.max(1024, this.values.size * 2);
    }
    return true;
  }

  async take(id: string): Promise<string | null> {
    const entry = this.values.get(id);
    this.values.delete(id);
    return entry && entry.expiresAt > Date.now() ? entry.value : null;
  }
}
