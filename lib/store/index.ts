import type { Config } from '../config/types';
import type { Logger } from '../log';
import { createMemoryStore } from './memory';
import { createRedisStore } from './redis';
import type { Store } from './records';

export type { StoreEvent, StoreEventListener } from './events';
export type {
  FamilyState,
  GrantRecords,
  Principals,
  RateLimitRecords,
  RevocationRecords,
  RevocationSnapshot,
  SingleUseRecords,
  Store,
  TeamRecords,
  WriteMode,
  WriteOutcome,
} from './records';
export { createMemoryStore } from './memory';
export { createRedisStore, connectRedis } from './redis';

/** The one factory: Redis when configured, else the in-memory embedded default. */
export function createStore(
  config: Pick<Config, 'redis' | 'keyPrefix' | 'authDurationMs'>,
  log: Logger,
): Store {
  if (!config.redis) return createMemoryStore();
  return createRedisStore(config.redis, config.keyPrefix, log, Math.ceil(config.authDurationMs / 1000));
}
