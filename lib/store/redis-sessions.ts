import { RedisStore } from 'connect-redis';
import type { SessionData } from 'express-session';
import { Cluster } from 'ioredis';
import { storeError } from './guarded';
import type { Keys } from './keys';
import type { RedisClient } from './redis-connect';

/** express-session records through connect-redis (pinned ~8.1, SPEC §2), cluster-aware when needed. */
export function sessionStore(client: RedisClient, keys: Keys, ttl: number): RedisStore {
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
