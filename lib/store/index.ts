import type { Config } from '../config/types';
import type { Logger } from '../log';
import { createMemoryStore } from './memory';
import { createRedisStore } from './redis';
import type { Store } from './records';

export type { StoreEvent, StoreEventListener } from './events';
export type {
  AuditRecords,
  AutomationTokenRecords,
  FamilyState,
  GrantRecords,
  LossKind,
  LossMarks,
  Principals,
  RateLimitRecords,
  RevocationCounts,
  RevocationCutoffs,
  RevocationRecords,
  RevocationSnapshot,
  SingleUseRecords,
  Store,
  StoreRequirements,
  TeamRecords,
  WriteMode,
  WriteOutcome,
} from './records';
export { LOSS_KINDS } from './records';
export { createMemoryStore, type EmbeddedStore, type EmbeddedStoreOptions } from './memory';
export { createRedisStore, connectRedis } from './redis';
export { UnconfirmedWrite } from './redis-durability';

/** The one factory: Redis when configured, else the in-memory embedded default. */
export function createStore(
  config: Pick<Config, 'redis' | 'keyPrefix' | 'authDurationMs' | 'replicaWaitMs'>,
  log: Logger,
  /** Told of each Redis connection error (the metrics' count). */
  onError?: () => void,
): Store {
  const ttlSeconds = Math.ceil(config.authDurationMs / 1000);
  if (!config.redis) return createMemoryStore({ sessionTtlSeconds: ttlSeconds });
  return createRedisStore(config.redis, config.keyPrefix, log, ttlSeconds, config.replicaWaitMs, onError);
}
