import type { StoreEvent } from './events';
import { guarded } from './guarded';
import type { Keys } from './keys';
import type { RedisDurability } from './redis-durability';
import type { RedisClient } from './redis-connect';
import type { Principals, TeamRecords, WriteMode, WriteOutcome } from './records';

/*
 * A team write moves its index entries inside one script: concurrent writers queue, never conflict.
 * Index keys: ARGV[2]/ARGV[3] (Keys prefixes) .. principal, all under `{teams}`: one Cluster slot.
 */
const TEAM_INDEX = `
local function index(json, command)
  local p = cjson.decode(json)
  for _, u in ipairs(p.users or {}) do redis.call(command, ARGV[2] .. u, ARGV[1]) end
  for _, g in ipairs(p.groups or {}) do redis.call(command, ARGV[3] .. g, ARGV[1]) end
end
`;

/*
 * KEYS: configs, principals. ARGV: team, user index prefix, group index prefix, json, principals JSON,
 *       channel, event JSON, '1' when the team must already exist.
 * Returns -2 when it must exist and does not, else 1 (created) or 0 (updated).
 */
const PUT_TEAM = `${TEAM_INDEX}
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old and ARGV[8] == '1' then return -2 end
if old then index(old, 'SREM') end
index(ARGV[5], 'SADD')
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return created
`;

/* KEYS: configs, principals. ARGV: team, user index prefix, group index prefix, channel, event JSON. */
const DELETE_TEAM = `${TEAM_INDEX}
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then index(old, 'SREM') end
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return removed
`;

/** Team configs in one hash, with an index of the principals each names (SPEC §6). */
export class RedisTeamRecords implements TeamRecords {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly durability: RedisDurability,
  ) {}

  get(team: string): Promise<string | null> {
    return guarded('read team', () => this.client.hget(this.keys.teamConfigs, team));
  }

  all(): Promise<Map<string, string>> {
    return guarded(
      'list teams',
      async () => new Map(Object.entries(await this.client.hgetall(this.keys.teamConfigs))),
    );
  }

  findByPrincipals({ users, groups }: Principals): Promise<Map<string, string>> {
    const indexKeys = [
      ...users.map((u) => this.keys.userIndex(u)),
      ...groups.map((g) => this.keys.groupIndex(g)),
    ];
    return guarded('find teams', async () => {
      if (indexKeys.length === 0) return new Map<string, string>();
      const names = await this.client.sunion(...indexKeys);
      if (names.length === 0) return new Map<string, string>();
      const configs = await this.client.hmget(this.keys.teamConfigs, ...names);
      const found = new Map<string, string>();
      names.forEach((name, i) => {
        const json = configs[i];
        if (json) found.set(name, json);
      });
      return found;
    });
  }

  /** numkeys, KEYS and the first ARGV (team, index prefixes) of both team scripts. */
  private teamScript(team: string): [number, string, string, string, string, string] {
    return [
      2,
      this.keys.teamConfigs,
      this.keys.teamPrincipals,
      team,
      this.keys.userIndex(''),
      this.keys.groupIndex(''),
    ];
  }

  put(team: string, json: string, principals: Principals, mode: WriteMode): Promise<WriteOutcome> {
    const event = JSON.stringify({ type: 'team', team, config: json } satisfies StoreEvent);
    const next = JSON.stringify(principals);
    const mustExist = mode === 'update' ? '1' : '0';
    return guarded('write team', async () => {
      const args = [json, next, this.keys.events, event, mustExist];
      const result = (await this.durability.acknowledged('write a team', this.keys.teamConfigs, (c) =>
        c.eval(PUT_TEAM, ...this.teamScript(team), ...args),
      )) as number;
      if (result === -2) return 'missing';
      return result === 1 ? 'created' : 'updated';
    });
  }

  delete(team: string): Promise<boolean> {
    const event = JSON.stringify({ type: 'team', team, config: null } satisfies StoreEvent);
    return guarded('delete team', async () => {
      const args = [this.keys.events, event];
      const removed = await this.durability.acknowledged('delete a team', this.keys.teamConfigs, (c) =>
        c.eval(DELETE_TEAM, ...this.teamScript(team), ...args),
      );
      return removed === 1;
    });
  }
}
