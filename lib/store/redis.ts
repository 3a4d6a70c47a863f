import { RedisStore } from 'connect-redis';
import type { SessionData } from 'express-session';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log';
import type { RedisConfig } from '../config/types';
import { parseStoreEvent, type StoreEvent, type StoreEventListener } from './events';
import { guarded, storeError } from './guarded';
import { Keys } from './keys';
import { RedisDurability } from './redis-durability';
import { RedisAuditRecords, RedisAutomationTokenRecords } from './redis-automation';
import { RedisGrantRecords } from './redis-grants';
import { RedisRateLimitRecords } from './redis-limits';
import { RedisRevocationRecords } from './redis-revocations';
import { RedisSingleUseRecords } from './redis-single-use';
import type { Principals, Store, TeamRecords, WriteMode, WriteOutcome } from './records';

type Client = Redis | Cluster;

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
  const password = config.password === undefined ? {} : { password: config.password };
  if (config.cluster && config.cluster.length > 0) {
    return new Cluster(config.cluster, {
      redisOptions: { ...common, ...password },
      clusterRetryStrategy: (n) => Math.min(n * 100, 1_000),
    });
  }
  if (config.sentinel) {
    const { sentinels, name, sentinelPassword } = config.sentinel;
    return new Redis({
      ...common,
      ...password,
      sentinels,
      name,
      ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
      // No failoverDetector: ioredis 6's detector, firing while the connection is already moving to the
      // new master, aborts that reconnect for good (its connector throws "Connection is closed.").
      // Sentinel itself drops every client of a server it reconfigures (CLIENT KILL), so the connection
      // moves anyway; a write that still meets a demoted master (READONLY) reconnects and is sent again.
      reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
      sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 100, 1_000),
    });
  }
  return config.url
    ? new Redis(config.url, { ...common, ...password })
    : new Redis({ ...common, ...password });
}

class RedisTeamRecords implements TeamRecords {
  constructor(
    private readonly client: Client,
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

/** express-session records through connect-redis (pinned ~8.1, SPEC §2), cluster-aware when needed. */
function sessionStore(client: Client, keys: Keys, ttl: number): RedisStore {
  const store = new GuardedSessionStore({ client, prefix: keys.sessionPrefix, ttl });
  if (client instanceof Cluster) store.client = clusterSessionClient(client);
  return store;
}

type SessionCallback = (err?: unknown, data?: unknown) => unknown;

/** Redis failing under express-session reaches the error handler as the one clear 503, like every store call. */
function asStoreError(what: string, callback?: SessionCallback): SessionCallback | undefined {
  return callback && ((err, data) => callback(err ? storeError(what, err) : err, data));
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
  /** SKY_REDIS_REPLICA_WAIT in ms (0: never wait). */
  replicaWaitMs = 2_000,
  /** Told of each connection error, after it is logged. */
  onError?: () => void,
): Store {
  const keys = new Keys(keyPrefix);
  const client = connectRedis(config);
  const durability = new RedisDurability(client, replicaWaitMs);
  // A second connection: a subscribed connection can run no other command.
  const subscriber: Client = client instanceof Cluster ? client.duplicate() : client.duplicate();
  const listeners = new Set<StoreEventListener>();
  const emit = (event: StoreEvent): void => {
    for (const listener of listeners) listener(event);
  };
  let subscribedOnce = false;
  let lost = false;
  client.on('error', (err: Error) => {
    log.warn({ err: err.message }, 'redis connection error');
    onError?.();
  });
  subscriber.on('error', (err: Error) => {
    log.warn({ err: err.message }, 'redis subscriber error');
    onError?.();
  });
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
  // sky's retry strategies never give up, but a driver that ends a connection anyway ('end' without
  // close(): ioredis 6 does when a connect is aborted under it) would leave the node cut off for good.
  // Such a connection is opened again; the subscriber subscribes again ('ready' resyncs as any reconnect).
  let closing = false;
  const revive = (connection: Client, name: string, afterReady?: () => void): void => {
    connection.on('end', () => {
      if (closing) return;
      log.warn(`the redis ${name} connection was ended by the driver: connecting again`);
      setTimeout(() => {
        if (!closing) connection.connect().then(afterReady, () => undefined);
      }, 200).unref();
    });
  };
  revive(client, 'command');
  revive(subscriber, 'subscriber', () => {
    subscriber.subscribe(keys.events).catch(() => undefined);
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
    requirements: () => durability.check(),
    reportLoss: (kind) =>
      guarded('report a data loss', async () => {
        await client.publish(keys.events, JSON.stringify({ type: 'data-loss', kind } satisfies StoreEvent));
      }),
    clockReading: () => durability.time(),
    teams: new RedisTeamRecords(client, keys, durability),
    revocations: new RedisRevocationRecords(client, keys, durability),
    grants: new RedisGrantRecords(client, keys, durability),
    rateLimits: new RedisRateLimitRecords(client, keys),
    singleUse: new RedisSingleUseRecords(client, keys),
    automationTokens: new RedisAutomationTokenRecords(client, keys, durability),
    audit: new RedisAuditRecords(client, keys),
    sessions: sessionStore(client, keys, sessionTtlSeconds),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      closing = true;
      listeners.clear();
      durability.close();
      // QUIT on a live connection; a connection still (re)connecting is simply dropped, timers and all.
      await Promise.allSettled(
        [subscriber, client].map((c) => (c.status === 'ready' ? c.quit() : Promise.resolve(c.disconnect()))),
      );
    },
  };
}
