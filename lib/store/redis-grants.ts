import type { Cluster, Redis } from 'ioredis';
import { parseStoreEvent, type StoreEvent } from './events';
import { guarded } from './guarded';
import type { Keys } from './keys';
import type { FamilyState, GrantRecords } from './records';

/*
 * A family hash holds `sub`, `hash` (its current token) and `used:<hash>` for every token it has spent.
 * Only a spent token is reuse and ends the family; any other value is unknown and changes nothing, so
 * knowing a family id (it is the JWT's `sid`) is not enough to end a family.
 * KEYS: family. ARGV: presented hash. Returns {state, sub}.
 */
const INSPECT = `
local current = redis.call('HGET', KEYS[1], 'hash')
if not current then return {'unknown', ''} end
local sub = redis.call('HGET', KEYS[1], 'sub')
if current == ARGV[1] then return {'current', sub} end
if redis.call('HEXISTS', KEYS[1], 'used:' .. ARGV[1]) == 0 then return {'unknown', ''} end
redis.call('DEL', KEYS[1])
return {'reused', sub}
`;

/* KEYS: family. ARGV: presented hash, next hash. The hash keeps the key's TTL (an absolute lifetime). */
const ROTATE = `
local current = redis.call('HGET', KEYS[1], 'hash')
if not current then return 'unknown' end
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'used:' .. ARGV[1], '1')
  return 'current'
end
if redis.call('HEXISTS', KEYS[1], 'used:' .. ARGV[1]) == 0 then return 'unknown' end
redis.call('DEL', KEYS[1])
return 'reused'
`;

/* KEYS: upstream, families, sessions. Returns {families, sessions} and deletes all three. */
const FORGET_USER = `
local families = redis.call('SMEMBERS', KEYS[2])
local sessions = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {families, sessions}
`;

/* KEYS: lock. ARGV: owner. Only the holder releases. */
const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

type Client = Redis | Cluster;

export class RedisGrantRecords implements GrantRecords {
  constructor(
    private readonly client: Client,
    private readonly keys: Keys,
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
    const families = this.keys.userFamilies(sub);
    return guarded('start a refresh family', async () => {
      // Two slots (the family is found by its id alone), so two writes; the family first, so a user's
      // revocation that runs between them still finds nothing to miss in the set but the family.
      await this.client.multi().hset(family, 'sub', sub, 'hash', tokenHash).expire(family, ttlSeconds).exec();
      await this.client.multi().sadd(families, familyId).expire(families, ttlSeconds).exec();
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
      return (await this.client.eval(ROTATE, 1, key, tokenHash, nextHash)) as FamilyState;
    });
  }

  endFamily(familyId: string): Promise<void> {
    return guarded('end a refresh family', async () => {
      await this.client.del(this.keys.refreshFamily(familyId));
    });
  }

  rememberSession(sub: string, sessionId: string, ttlSeconds: number): Promise<void> {
    const sessions = this.keys.userSessions(sub);
    return guarded('index a session', async () => {
      await this.client.multi().sadd(sessions, sessionId).expire(sessions, ttlSeconds).exec();
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
}
