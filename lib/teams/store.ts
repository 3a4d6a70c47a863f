import type { Identity } from '../connector';
import type { StoreEvent, TeamRecords, WriteMode, WriteOutcome } from '../store';
import {
  parseTeamAuth,
  principalsOf,
  roleOf,
  rolesOf,
  teamAuthEntries,
  type Role,
  type TeamAuth,
} from './auth';

/** Team configs one node keeps (about 1 KB each): every team a busy node serves, well under 150 MB of RSS. */
const CACHE_SIZE = 10_000;

/**
 * Team configs as the domain sees them: validated TeamAuth over the store's records, with a node-local
 * cache that every node's change event invalidates (SPEC §6.3), so guards read the current config
 * without a Redis round trip and a set-team applies everywhere without a new login.
 */
export class TeamStore {
  private readonly cache = new Map<string, TeamAuth | null>();
  /** Bumped on every invalidation, so a read that raced a change never fills the cache with stale data. */
  private generation = 0;

  constructor(private readonly records: TeamRecords) {}

  /** Feed every store event here. */
  handle(event: StoreEvent): void {
    if (event.type === 'team') {
      this.cache.delete(event.team);
      this.generation++;
    } else if (event.type === 'resync') {
      this.cache.clear();
      this.generation++;
    }
  }

  /** The cached config (null: no such team), or undefined when the cache does not know the team. */
  cached(team: string): TeamAuth | null | undefined {
    return this.cache.get(team);
  }

  /** The current config of one team (null: no such team), from the cache when it is warm. */
  async get(team: string): Promise<TeamAuth | null> {
    const cached = this.cache.get(team);
    if (cached !== undefined) return cached;
    const generation = this.generation;
    const auth = decode(await this.records.get(team));
    if (generation === this.generation) this.remember(team, auth);
    return auth;
  }

  /**
   * Bounded, first in first out: a node's memory must not grow with the number of teams (or of team
   * names asked for: misses are cached too). An evicted config is one HGET away.
   */
  private remember(team: string, auth: TeamAuth | null): void {
    this.cache.set(team, auth);
    if (this.cache.size > CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as string);
  }

  async all(): Promise<Map<string, TeamAuth>> {
    const teams = new Map<string, TeamAuth>();
    for (const [team, json] of await this.records.all()) {
      const auth = decode(json);
      if (auth) teams.set(team, auth);
    }
    return teams;
  }

  /**
   * The configs of the teams where a person holds a role, through the index: two round trips whatever
   * the number of teams (SPEC §6.3).
   */
  async configsOf(identity: Identity): Promise<Map<string, TeamAuth>> {
    const teams = new Map<string, TeamAuth>();
    for (const [team, json] of await this.records.findByPrincipals(principalsOf(identity))) {
      const auth = decode(json);
      if (auth && roleOf(identity, auth) !== null) teams.set(team, auth);
    }
    return teams;
  }

  /** The teams and roles of a person (highest first), through the index. */
  async teamsOf(identity: Identity): Promise<Record<string, Role[]>> {
    const teams: Record<string, Role[]> = {};
    for (const [team, auth] of await this.configsOf(identity)) teams[team] = rolesOf(identity, auth);
    return teams;
  }

  /** Writes a validated config; `update` refuses to create (resolves 'missing'). */
  async put(team: string, auth: TeamAuth, mode: WriteMode = 'upsert'): Promise<WriteOutcome> {
    const outcome = await this.records.put(team, JSON.stringify(auth), teamAuthEntries(auth), mode);
    this.cache.delete(team);
    this.generation++;
    return outcome;
  }

  async delete(team: string): Promise<boolean> {
    const deleted = await this.records.delete(team);
    this.cache.delete(team);
    this.generation++;
    return deleted;
  }
}

/** Stored JSON was validated on write; a record that no longer parses counts as no team, never as access. */
function decode(json: string | null): TeamAuth | null {
  if (json === null) return null;
  try {
    return parseTeamAuth(JSON.parse(json), undefined, { stored: true });
  } catch {
    return null;
  }
}
