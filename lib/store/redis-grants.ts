import { parseStoreEvent, type StoreEvent } from './events';
import { guarded } from './guarded';
import type { Keys } from './keys';
import type { RedisDurability } from './redis-durability';
import type { FamilyState, GrantRecords } from './records';
import type { RedisClient } from './redis-connect';

/*
 * A family hash holds `sub`, `hash` (its current token) and `used`: the last SPENT_KEPT tokens it spent,
 * space-separated (older sky wrote one `used:<hash>` field per token; those still count). Only a spent
 * token is reuse and ends the family; any other value is unknown and changes nothing, so knowing a
 * family id (it is the JWT's `sid`) is not enough to end a family.
 */
const SPENT = `
local function spent(key, hash)
  local used = redis.call('HGET', key, 'used') or ''
  if string.find(' ' .. used .. ' ', ' ' .. hash .. ' ', 1, true) then return true end
  return redis.call('HEXISTS', key, 'used:' .. hash) == 1
end
`;

/* KEYS: family. ARGV: presented hash. Returns {state, sub}. */
const INSPECT = `${SPENT}
local current = redis.call('HGET', KEYS[1], 'hash')
if not current then return {'unknown', ''} end
local sub = redis.call('HGET', KEYS[1], 'sub')
if current == ARGV[1] then return {'current', sub} end
if not spent(KEYS[1], ARGV[1]) then return {'unknown', ''} end
redis.call('DEL', KEYS[1])
return {'reused', sub}
`;

/*
 * KEYS: family. ARGV: presented hash, next hash, how many spent tokens to keep. The hash keeps the
 * key's TTL (an absolute lifetime); the spent list keeps the newest, so a family's record stays bounded.
 */
const ROTATE = `${SPENT}
local current = redis.call('HGET', KEYS[1], 'hash')
if not current then return 'unknown' end
if current == ARGV[1] then
  local used = {}
  for h in string.gmatch(redis.call('HGET', KEYS[1], 'used') or '', '%S+') do table.insert(used, h) end
  table.insert(used, ARGV[1])
  while #used > tonumber(ARGV[3]) do table.remove(used, 1) end
  redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'used', table.concat(used, ' '))
  return 'current'
end
if not spent(KEYS[1], ARGV[1]) then return 'unknown' end
redis.call('DEL', KEYS[1])
return 'reused'
`;

/*
 * A user's family and session ids are sorted sets scored by when each expires (older sky kept plain
 * sets: converted on first touch), pruned as members expire, so a user's sets hold only live logins.
 */
const AS_SORTED = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function as_sorted(key, ttl_ms)
  if redis.call('TYPE', key).ok ~= 'set' then return end
  local members = redis.call('SMEMBERS', key)
  redis.call('DEL', key)
  for _, m in ipairs(members) do redis.call('ZADD', key, now_ms() + ttl_ms, m) end
end
`;

/* KEYS: the user's set. ARGV: member, ttl (ms). */
const ADD_MEMBER = `${AS_SORTED}
local ttl = tonumber(ARGV[2])
as_sorted(KEYS[1], ttl)
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`;

/* KEYS: upstream, families, sessions. Returns the live {families, sessions} and deletes all three. */
const FORGET_USER = `${AS_SORTED}
as_sorted(KEYS[2], 0)
as_sorted(KEYS[3], 0)
local now = '(' .. now_ms()
local families = redis.call('ZRANGE', KEYS[2], now, '+inf', 'BYSCORE')
local sessions = redis.call('ZRANGE', KEYS[3], now, '+inf', 'BYSCORE')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {families, sessions}
`;

/* KEYS: the user's set. ARGV: member. */
const REMOVE_MEMBER = `${AS_SORTED}
as_sorted(KEYS[1], 0)
return redis.call('ZREM', KEYS[1], ARGV[1])
`;

/* KEYS: lock. ARGV: owner. Only the holder releases. */
const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/* KEYS: lock. ARGV: owner, ttl (ms). Only the holder extends its lease. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

/** How many spent refresh tokens a family remembers for reuse detection (a bounded record). */
const SPENT_KEPT = 16;

export class RedisGrantRecords implements GrantRecords {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly durability: RedisDurability,
  ) {}

  upstream(sub: string): Promise<string | null> {
    return guarded('read upstream tokens', () => this.client.get(this.keys.userUpstream(sub)));
  }

  saveUpstream(sub: string, sealed: string, ttlSeconds: number): Promise<void> {
    return guarded('save upstream tokens', async () => {
      await this.client.set(this.keys.userUpstream(sub), sealed, 'EX', ttlSeconds);
    });
  }

  createFamily(sub: string, familyId: string, tokenHash: string, ttlSeconds: number): Promise<void> {
    const family = this.keys.refreshFamily(familyId);
    return guarded('start a refresh family', async () => {
      // Two slots (the family is found by its id alone), so two writes; the family first, so a user's
      // revocation that runs between them still finds nothing to miss in the set but the family.
      await this.client.multi().hset(family, 'sub', sub, 'hash', tokenHash).expire(family, ttlSeconds).exec();
      await this.client.eval(ADD_MEMBER, 1, this.keys.userFamilies(sub), familyId, ttlSeconds * 1000);
    });
  }

  inspect(familyId: string, tokenHash: string): Promise<{ state: FamilyState; sub?: string }> {
    return guarded('read a refresh family', async () => {
      const [state, sub] = (await this.client.eval(
        INSPECT,
        1,
        this.keys.refreshFamily(familyId),
        tokenHash,
      )) as [FamilyState, string];
      return state === 'unknown' ? { state } : { state, sub };
    });
  }

  rotate(familyId: string, tokenHash: string, nextHash: string): Promise<FamilyState> {
    return guarded('rotate a refresh token', async () => {
      const key = this.keys.refreshFamily(familyId);
      // A rotation a failover undid would make the client's new token unknown and its old one current.
      return (await this.durability.acknowledged('rotate a refresh token', key, (c) =>
        c.eval(ROTATE, 1, key, tokenHash, nextHash, SPENT_KEPT),
      )) as FamilyState;
    });
  }

  endFamily(familyId: string): Promise<void> {
    const family = this.keys.refreshFamily(familyId);
    return guarded('end a refresh family', async () => {
      const sub = await this.client.hget(family, 'sub');
      await this.client.del(family);
      if (sub !== null) await this.client.eval(REMOVE_MEMBER, 1, this.keys.userFamilies(sub), familyId);
    });
  }

  rememberSession(sub: string, sessionId: string, ttlSeconds: number): Promise<void> {
    return guarded('index a session', async () => {
      await this.client.eval(ADD_MEMBER, 1, this.keys.userSessions(sub), sessionId, ttlSeconds * 1000);
    });
  }

  forgetSession(sub: string, sessionId: string): Promise<void> {
    return guarded('unindex a session', async () => {
      await this.client.eval(REMOVE_MEMBER, 1, this.keys.userSessions(sub), sessionId);
    });
  }

  forgetUser(sub: string): Promise<string[]> {
    const keys = [this.keys.userUpstream(sub), this.keys.userFamilies(sub), this.keys.userSessions(sub)];
    return guarded('revoke a user', async () => {
      const [families, sessions] = (await this.client.eval(FORGET_USER, 3, ...keys)) as [string[], string[]];
      // Families live in their own slots: one DEL each, never a cross-slot command.
      await Promise.all(families.map((id) => this.client.del(this.keys.refreshFamily(id))));
      return sessions;
    });
  }

  saveGroups(sub: string, record: { groups: string[]; readAt: number }, ttlSeconds: number): Promise<void> {
    const event: StoreEvent = { type: 'groups', sub, ...record };
    return guarded('save the groups', async () => {
      await this.client.set(this.keys.userGroups(sub), JSON.stringify(record), 'EX', ttlSeconds);
      await this.client.publish(this.keys.events, JSON.stringify(event));
    });
  }

  groups(sub: string): Promise<{ groups: string[]; readAt: number } | null> {
    return guarded('read the groups', async () => {
      const json = await this.client.get(this.keys.userGroups(sub));
      if (json === null) return null;
      const parsed = parseStoreEvent(
        JSON.stringify({ type: 'groups', sub, ...(JSON.parse(json) as object) }),
      );
      return parsed?.type === 'groups' ? { groups: parsed.groups, readAt: parsed.readAt } : null;
    });
  }

  lock(sub: string, owner: string, ttlMs: number): Promise<boolean> {
    return guarded('take the refresh lease', async () => {
      return (await this.client.set(this.keys.userLock(sub), owner, 'PX', ttlMs, 'NX')) === 'OK';
    });
  }

  unlock(sub: string, owner: string): Promise<void> {
    return guarded('release the refresh lease', async () => {
      await this.client.eval(UNLOCK, 1, this.keys.userLock(sub), owner);
    });
  }

  renew(sub: string, owner: string, ttlMs: number): Promise<boolean> {
    return guarded('renew the refresh lease', async () => {
      return Number(await this.client.eval(RENEW, 1, this.keys.userLock(sub), owner, ttlMs)) === 1;
    });
  }
}
