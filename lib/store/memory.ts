import { MemoryStore } from 'express-session';
import type { StoreEvent, StoreEventListener } from './events';
import type { Principals, RevocationRecords, Store, TeamRecords, WriteMode, WriteOutcome } from './records';

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
    teams: new MemoryTeamRecords(emit),
    revocations: new MemoryRevocationRecords(emit),
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
  private readonly tokens = new Map<string, number>();
  private readonly users = new Map<string, number>();

  constructor(private readonly emit: (event: StoreEvent) => void) {}

  async revokeToken(jti: string, expMs: number): Promise<void> {
    this.tokens.set(jti, expMs);
    this.emit({ type: 'revoke-token', jti, exp: expMs });
  }

  async revokeUser(sub: string, notBefore: number): Promise<void> {
    const effective = Math.max(this.users.get(sub) ?? 0, notBefore);
    this.users.set(sub, effective);
    this.emit({ type: 'revoke-user', sub, notBefore: effective });
  }

  async load(nowMs: number): Promise<{ tokens: [string, number][]; users: [string, number][] }> {
    for (const [jti, exp] of this.tokens) if (exp <= nowMs) this.tokens.delete(jti);
    return { tokens: [...this.tokens], users: [...this.users] };
  }
}
