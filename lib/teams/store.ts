import { BoundedMap } from '../bounded-map';
import type { Identity } from '../connector';
import { isSkyError } from '../errors';
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
  /**
   * Bounded: a node's memory must not grow with the number of teams (or of team names asked for:
   * misses are cached too). An evicted config is one HGET away.
   */
  private readonly cache = new BoundedMap<string, TeamAuth | null>(CACHE_SIZE);
  /** The names of the teams last found per principals (JSON), for an outage (configsOf). */
  private readonly lastFound = new BoundedMap<string, string[]>(CACHE_SIZE);
  /** Bumped on every invalidation, so a read that raced a change never fills the cache with stale data. */
  private generation = 0;

  constructor(private readonly records: TeamRecords) {}

  /** Feed every store event here. */
  handle(event: StoreEvent): void {
    if (event.type === 'team') {
      // An event only invalidates; the cache is filled from Redis alone. Events come on the subscriber
      // connection (on a Cluster, over the cluster bus too), so one can arrive after this node's own
      // later write, or a later read, has returned: filling the cache from its config would bring an
      // older config back for a moment (a role just removed would still grant). A read that raced the
      // change never lands (the generation moved on).
      this.generation++;
      this.cache.delete(event.team);
    } else if (event.type === 'resync') {
      this.cache.clear();
      this.lastFound.clear();
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
    if (generation === this.generation) this.cache.set(team, auth);
    return auth;
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
   * the number of teams (SPEC §6.3). While Redis cannot be reached, the teams last found for the same
   * principals serve, judged on the configs this node's cache holds now (a change's event removes that
   * team from the cache, and the guards bound an outage by SKY_OUTAGE_GRACE): a team the cache does not
   * hold, changed since or never read, is left out — an outage can cost access, never grant it.
   */
  async configsOf(identity: Identity): Promise<Map<string, TeamAuth>> {
    const principals = principalsOf(identity);
    const key = JSON.stringify(principals);
    const generation = this.generation;
    let found: Map<string, string>;
    try {
      found = await this.records.findByPrincipals(principals);
    } catch (err) {
      const names = this.lastFound.get(key);
      if (!names || !(isSkyError(err) && err.code === 'store_unavailable')) throw err;
      const teams = new Map<string, TeamAuth>();
      for (const team of names) {
        const auth = this.cache.get(team);
        if (auth && roleOf(identity, auth) !== null) teams.set(team, auth);
      }
      return teams;
    }
    const teams = new Map<string, TeamAuth>();
    for (const [team, json] of found) {
      const auth = decode(json);
      if (generation === this.generation) this.cache.set(team, auth);
      if (auth && roleOf(identity, auth) !== null) teams.set(team, auth);
    }
    this.lastFound.set(key, [...teams.keys()]);
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
    return parseTeamAuth(JSON.parse(json), { stored: true });
  } catch {
    return null;
  }
}
