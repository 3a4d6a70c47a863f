import { Cluster } from 'ioredis';
import type { Logger } from '../log';
import type { RedisConfig } from '../config/types';
import { parseStoreEvent, type StoreEvent, type StoreEventListener } from './events';
import { guarded } from './guarded';
import { Keys } from './keys';
import { connectRedis, type RedisClient } from './redis-connect';
import { sessionStore } from './redis-sessions';
import { RedisTeamRecords } from './redis-teams';
import { RedisDurability } from './redis-durability';
import { RedisAuditRecords, RedisAutomationTokenRecords } from './redis-automation';
import { RedisGrantRecords } from './redis-grants';
import { RedisRateLimitRecords } from './redis-limits';
import { RedisRevocationRecords } from './redis-revocations';
import { RedisSingleUseRecords } from './redis-single-use';
import { isLossKind, lossMark, type Store } from './records';

export { connectRedis } from './redis-connect';

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
  const subscriber: RedisClient = client instanceof Cluster ? client.duplicate() : client.duplicate();
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
  const revive = (connection: RedisClient, name: string, afterReady?: () => void): void => {
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
        const mark = lossMark();
        await client.hset(keys.losses, kind, mark);
        await client.publish(keys.events, JSON.stringify({ type: 'data-loss', kind } satisfies StoreEvent));
        return mark;
      }),
    lossMarks: () =>
      guarded('read the data-loss marks', async () => {
        const stored = Object.entries(await client.hgetall(keys.losses));
        return Object.fromEntries(stored.filter(([kind]) => isLossKind(kind)));
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
