import { RedisStore } from 'connect-redis';
import type { SessionData } from 'express-session';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { SkyError } from '../errors';
import type { Logger } from '../log';
import type { RedisConfig } from '../config/types';
import { parseStoreEvent, type StoreEvent, type StoreEventListener } from './events';
import { guarded } from './guarded';
import { Keys } from './keys';
import { RedisGrantRecords } from './redis-grants';
import { RedisRateLimitRecords } from './redis-limits';
import type { Principals, RevocationRecords, Store, TeamRecords, WriteMode, WriteOutcome } from './records';

type Client = Redis | Cluster;

/** Optimistic writers retry when another node moved the same team between their read and write. */
const MAX_TEAM_WRITE_ATTEMPTS = 8;

/*
 * KEYS: configs, principals, …old index keys, …new index keys.
 * ARGV: team, json, new principals JSON, expected old principals JSON ('' = none), number of old keys,
 *       channel, event JSON, '1' when the team must already exist.
 * Returns -1 when the team changed since the caller read it, -2 when it must exist and does not,
 * else 1 (created) or 0 (updated).
 */
const PUT_TEAM = `
local current = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if current ~= ARGV[4] then return -1 end
if current == '' and ARGV[8] == '1' then return -2 end
local nold = tonumber(ARGV[5])
for i = 3, 2 + nold do redis.call('SREM', KEYS[i], ARGV[1]) end
for i = 3 + nold, #KEYS do redis.call('SADD', KEYS[i], ARGV[1]) end
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return created
`;

/* KEYS: configs, principals, …old index keys. ARGV: team, expected old principals JSON, channel, event. */
const DELETE_TEAM = `
local current = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if current ~= ARGV[2] then return -1 end
for i = 3, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return removed
`;

/* KEYS: revoked users. ARGV: subject, not-before. Stores and returns the later of the old and new time. */
const REVOKE_USER = `
local previous = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local effective = math.max(previous, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], tostring(effective))
return effective
`;

export function connectRedis(config: RedisConfig): Client {
  const common = {
    // Fail a command after a short outage instead of queueing it forever (SECURITY: bounded latency).
    maxRetriesPerRequest: 2,
    connectTimeout: 5_000,
    commandTimeout: 5_000,
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 1_000),
    // Sentinel, TLS and the like pass through untouched (README: Sentinel and Cluster).
    ...(config.options as Omit<RedisOptions, 'replyMapping'> | undefined),
  };
  if (config.cluster && config.cluster.length > 0) {
    return new Cluster(config.cluster, {
      redisOptions: common,
      clusterRetryStrategy: (n) => Math.min(n * 100, 1_000),
    });
  }
  return config.url ? new Redis(config.url, common) : new Redis(common);
}

class RedisTeamRecords implements TeamRecords {
  constructor(
    private readonly client: Client,
    private readonly keys: Keys,
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
      if (indexKeys.length === 0) return new Map();
      const names = await this.client.sunion(...indexKeys);
      if (names.length === 0) return new Map();
      const configs = await this.client.hmget(this.keys.teamConfigs, ...names);
      const found = new Map<string, string>();
      names.forEach((name, i) => {
        const json = configs[i];
        if (json) found.set(name, json);
      });
      return found;
    });
  }

  private indexKeys(p: Principals): string[] {
    return [...p.users.map((u) => this.keys.userIndex(u)), ...p.groups.map((g) => this.keys.groupIndex(g))];
  }

  private oldPrincipals(json: string | null): Principals {
    return json ? (JSON.parse(json) as Principals) : { users: [], groups: [] };
  }

  put(team: string, json: string, principals: Principals, mode: WriteMode): Promise<WriteOutcome> {
    const event = JSON.stringify({ type: 'team', team } satisfies StoreEvent);
    const next = JSON.stringify(principals);
    return guarded('write team', async () => {
      for (let attempt = 0; attempt < MAX_TEAM_WRITE_ATTEMPTS; attempt++) {
        const previous = await this.client.hget(this.keys.teamPrincipals, team);
        const oldKeys = this.indexKeys(this.oldPrincipals(previous));
        const keys = [
          this.keys.teamConfigs,
          this.keys.teamPrincipals,
          ...oldKeys,
          ...this.indexKeys(principals),
        ];
        const args = [
          team,
          json,
          next,
          previous ?? '',
          String(oldKeys.length),
          this.keys.events,
          event,
          mode === 'update' ? '1' : '0',
        ];
        const result = (await this.client.eval(PUT_TEAM, keys.length, ...keys, ...args)) as number;
        if (result === -2) return 'missing';
        if (result !== -1) return result === 1 ? 'created' : 'updated';
      }
      throw new SkyError('store_unavailable', `team '${team}' is being changed concurrently; try again`);
    });
  }

  delete(team: string): Promise<boolean> {
    const event = JSON.stringify({ type: 'team', team } satisfies StoreEvent);
    return guarded('delete team', async () => {
      for (let attempt = 0; attempt < MAX_TEAM_WRITE_ATTEMPTS; attempt++) {
        const previous = await this.client.hget(this.keys.teamPrincipals, team);
        const keys = [
          this.keys.teamConfigs,
          this.keys.teamPrincipals,
          ...this.indexKeys(this.oldPrincipals(previous)),
        ];
        const args = [team, previous ?? '', this.keys.events, event];
        const result = (await this.client.eval(DELETE_TEAM, keys.length, ...keys, ...args)) as number;
        if (result !== -1) return result === 1;
      }
      throw new SkyError('store_unavailable', `team '${team}' is being changed concurrently; try again`);
    });
  }
}

class RedisRevocationRecords implements RevocationRecords {
  constructor(
    private readonly client: Client,
    private readonly keys: Keys,
  ) {}

  revokeToken(jti: string, expMs: number): Promise<void> {
    const event = JSON.stringify({ type: 'revoke-token', jti, exp: expMs } satisfies StoreEvent);
    return guarded('revoke token', async () => {
      await this.client.zadd(this.keys.revokedTokens, expMs, jti);
      await this.client.publish(this.keys.events, event);
    });
  }

  revokeUser(sub: string, notBefore: number): Promise<void> {
    return guarded('revoke user', async () => {
      // Atomically keep the later time: two nodes revoking at once, or an older revocation arriving
      // late, must never lower it and re-admit tokens.
      const effective = Number(
        await this.client.eval(REVOKE_USER, 1, this.keys.revokedUsers, sub, notBefore),
      );
      const event: StoreEvent = { type: 'revoke-user', sub, notBefore: effective };
      await this.client.publish(this.keys.events, JSON.stringify(event));
    });
  }

  load(nowMs: number): Promise<{ tokens: [string, number][]; users: [string, number][] }> {
    return guarded('load revocations', async () => {
      await this.client.zremrangebyscore(this.keys.revokedTokens, '-inf', nowMs);
      const flat = await this.client.zrange(this.keys.revokedTokens, '0', '-1', 'WITHSCORES');
      const tokens: [string, number][] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) tokens.push([flat[i] as string, Number(flat[i + 1])]);
      const users = Object.entries(await this.client.hgetall(this.keys.revokedUsers)).map(
        ([sub, nbf]): [string, number] => [sub, Number(nbf)],
      );
      return { tokens, users };
    });
  }
}

/** express-session records through connect-redis (pinned ~8.1, SPEC §2), cluster-aware when needed. */
function sessionStore(client: Client, keys: Keys, ttl: number): RedisStore {
  const store = new GuardedSessionStore({ client, prefix: keys.sessionPrefix, ttl });
  if (client instanceof Cluster) store.client = clusterSessionClient(client);
  return store;
}

type SessionCallback = (err?: unknown, data?: unknown) => unknown;

/** Redis failing under express-session reaches the error handler as the one clear 503, like every store call. */
function asStoreError(what: string, callback?: SessionCallback): SessionCallback | undefined {
  return (
    callback &&
    ((err, data) =>
      callback(
        err ? new SkyError('store_unavailable', `Redis is unavailable (${what})`, { cause: err }) : err,
        data,
      ))
  );
}

class GuardedSessionStore extends RedisStore {
  override get(sid: string, callback?: SessionCallback): Promise<unknown> {
    return super.get(sid, asStoreError('read a session', callback));
  }
  override set(sid: string, session: SessionData, callback?: SessionCallback): Promise<unknown> {
    return super.set(sid, session, asStoreError('save a session', callback));
  }
  override touch(sid: string, session: SessionData, callback?: SessionCallback): Promise<unknown> {
    return super.touch(sid, session, asStoreError('touch a session', callback));
  }
  override destroy(sid: string, callback?: SessionCallback): Promise<unknown> {
    return super.destroy(sid, asStoreError('end a session', callback));
  }
}

/**
 * connect-redis 8 drives an ioredis Cluster as one server: its SCAN sees one master only and its MGET/DEL
 * of many sessions fail with CROSSSLOT. Its normalised client is public, so it gets one that scans every
 * master and sends one key per command (session keys spread over all slots on purpose).
 */
function clusterSessionClient(cluster: Cluster): RedisStore['client'] {
  return {
    get: (key) => cluster.get(key),
    set: (key, value, ttl) => (ttl ? cluster.set(key, value, 'EX', ttl) : cluster.set(key, value)),
    expire: (key, ttl) => cluster.expire(key, ttl),
    del: async (keys) => (await Promise.all(keys.map((k) => cluster.del(k)))).reduce((a, b) => a + b, 0),
    mget: (keys) => Promise.all(keys.map((k) => cluster.get(k))),
    scanIterator: (match, count) =>
      (async function* () {
        for (const node of cluster.nodes('master')) {
          let cursor = '0';
          do {
            const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', count);
            cursor = next;
            yield* found;
          } while (cursor !== '0');
        }
      })(),
  };
}

/** The Redis store: one command connection, one subscriber connection, sessions through connect-redis. */
export function createRedisStore(
  config: RedisConfig,
  keyPrefix: string,
  log: Logger,
  sessionTtlSeconds: number,
): Store {
  const keys = new Keys(keyPrefix);
  const client = connectRedis(config);
  // A second connection: a subscribed connection can run no other command.
  const subscriber: Client = client instanceof Cluster ? client.duplicate() : client.duplicate();
  const listeners = new Set<StoreEventListener>();
  const emit = (event: StoreEvent): void => {
    for (const listener of listeners) listener(event);
  };
  let subscribedOnce = false;
  let lost = false;
  client.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
  subscriber.on('error', (err: Error) => log.warn({ err: err.message }, 'redis subscriber error'));
  subscriber.on('message', (_channel: string, message: string) => {
    const event = parseStoreEvent(message);
    if (event) emit(event);
  });
  // Cut off from the channel: other nodes' changes no longer reach this node (SPEC outage policy).
  const onLost = (): void => {
    if (!subscribedOnce || lost) return;
    lost = true;
    emit({ type: 'lost' });
  };
  subscriber.on('close', onLost);
  subscriber.on('reconnecting', onLost);
  // ioredis re-subscribes after a reconnect; whatever was published meanwhile was missed.
  subscriber.on('ready', () => {
    if (subscribedOnce) emit({ type: 'resync' });
    subscribedOnce = true;
    lost = false;
  });
  let subscribing: Promise<void> | null = null;
  const start = (): Promise<void> =>
    (subscribing ??= guarded('subscribe', async () => {
      await subscriber.subscribe(keys.events);
    }).catch((err: unknown) => {
      subscribing = null; // a later start() tries again (Redis may have been down at start-up)
      throw err;
    }));
  const ready = start();
  ready.catch(() => undefined); // the caller awaits it; this only keeps an early failure from being unhandled

  return {
    kind: 'redis',
    ready,
    start,
    teams: new RedisTeamRecords(client, keys),
    revocations: new RedisRevocationRecords(client, keys),
    grants: new RedisGrantRecords(client, keys),
    rateLimits: new RedisRateLimitRecords(client, keys),
    sessions: sessionStore(client, keys, sessionTtlSeconds),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      listeners.clear();
      // QUIT on a live connection; a connection still (re)connecting is simply dropped, timers and all.
      await Promise.allSettled(
        [subscriber, client].map((c) => (c.status === 'ready' ? c.quit() : Promise.resolve(c.disconnect()))),
      );
    },
  };
}
