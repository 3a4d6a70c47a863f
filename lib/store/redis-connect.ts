import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisConfig } from '../config/types';

/** A connection to Redis: one server (standalone or through Sentinel) or a Cluster. */
export type RedisClient = Redis | Cluster;

export function connectRedis(config: RedisConfig): RedisClient {
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
