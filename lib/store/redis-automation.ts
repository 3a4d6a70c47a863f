import type { StoreEvent } from './events';
import { guarded } from './guarded';
import type { Keys } from './keys';
import type { RedisDurability } from './redis-durability';
import type { AuditRecords, AutomationTokenRecords } from './records';
import type { RedisClient } from './redis-connect';

/* KEYS: tokens, the team's names, teams. ARGV: name, id, json, team, channel, event. 0: the name is taken. */
const CREATE = `
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`;

/* KEYS: tokens, the team's names, teams, uses. ARGV: name, team, channel. The record, or false. */
const REMOVE = `
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
local json = redis.call('HGET', KEYS[1], id)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], id)
redis.call('HDEL', KEYS[4], id)
if redis.call('HLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'automation-token', id = id}))
return json or ''
`;

export class RedisAutomationTokenRecords implements AutomationTokenRecords {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly durability: RedisDurability,
  ) {}

  create(team: string, name: string, id: string, json: string): Promise<boolean> {
    const event = JSON.stringify({ type: 'automation-token', id } satisfies StoreEvent);
    const k = this.keys;
    return guarded('store an automation token', async () => {
      const created = await this.durability.acknowledged(
        'store an automation token',
        k.automationTokens,
        (c) =>
          c.eval(
            CREATE,
            3,
            k.automationTokens,
            k.teamAutomationTokens(team),
            k.automationTokenTeams,
            name,
            id,
            json,
            team,
            k.events,
            event,
          ),
      );
      return created === 1;
    });
  }

  get(id: string): Promise<string | null> {
    return guarded('read an automation token', () => this.client.hget(this.keys.automationTokens, id));
  }

  list(team: string): Promise<Map<string, string>> {
    return guarded('list automation tokens', async () => {
      const names = await this.client.hgetall(this.keys.teamAutomationTokens(team));
      const entries = Object.entries(names);
      if (entries.length === 0) return new Map<string, string>();
      const records = await this.client.hmget(this.keys.automationTokens, ...entries.map(([, id]) => id));
      const found = new Map<string, string>();
      entries.forEach(([name], i) => {
        const json = records[i];
        if (json) found.set(name, json);
      });
      return found;
    });
  }

  remove(team: string, name: string): Promise<string | null> {
    const k = this.keys;
    return guarded('revoke an automation token', async () => {
      const json = await this.durability.acknowledged('revoke an automation token', k.automationTokens, (c) =>
        c.eval(
          REMOVE,
          4,
          k.automationTokens,
          k.teamAutomationTokens(team),
          k.automationTokenTeams,
          k.automationTokenUses,
          name,
          team,
          k.events,
        ),
      );
      return typeof json === 'string' ? json : null;
    });
  }

  teams(): Promise<string[]> {
    return guarded('list teams with automation tokens', () =>
      this.client.smembers(this.keys.automationTokenTeams),
    );
  }

  touch(uses: Map<string, number>): Promise<void> {
    return guarded('record automation token uses', async () => {
      if (uses.size === 0) return;
      await this.client.hset(
        this.keys.automationTokenUses,
        Object.fromEntries([...uses].map(([id, ms]) => [id, String(ms)])),
      );
    });
  }

  lastUsed(ids: string[]): Promise<(number | null)[]> {
    return guarded('read automation token uses', async () => {
      if (ids.length === 0) return [];
      const values = await this.client.hmget(this.keys.automationTokenUses, ...ids);
      return values.map((v) => (v === null ? null : Number(v)));
    });
  }
}

export class RedisAuditRecords implements AuditRecords {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
  ) {}

  append(json: string, maxEvents: number, oldestMs: number): Promise<string> {
    const key = this.keys.audit;
    return guarded('write an audit event', async () => {
      // One round trip; the age trim is a second command (XADD takes one trimming strategy). Exact
      // trims (no `~`): the bounds are what the README says, and audit volumes make them cheap.
      const answers = await this.client
        .multi()
        .xadd(key, 'MAXLEN', String(maxEvents), '*', 'event', json)
        .xtrim(key, 'MINID', String(Math.max(0, Math.floor(oldestMs))))
        .exec();
      const failed = answers?.find(([err]) => err);
      if (!answers || failed) throw failed?.[0] ?? new Error('the audit write was not executed');
      return String(answers[0]?.[1]);
    });
  }

  read(sinceMs: number, before: string | null, count: number): Promise<[string, string][]> {
    return guarded('read the audit trail', async () => {
      const end = before === null ? '+' : `(${before}`;
      const entries = await this.client.xrevrange(
        this.keys.audit,
        end,
        String(Math.max(0, Math.ceil(sinceMs))),
        'COUNT',
        count,
      );
      return entries.map(([id, fields]): [string, string] => [id, fields[1] ?? '{}']);
    });
  }
}
