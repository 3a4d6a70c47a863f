import { SkyError } from '../errors';

/** Redis answers this way when `maxmemory` is reached under `noeviction` (SPEC §8: sky never evicts). */
export const isFull = (err: unknown): boolean => err instanceof Error && /^OOM\b/.test(err.message);

/**
 * A Redis error as sky reports it: one clear 503, with the driver's error kept as the cause for the log.
 * A full Redis says so: it is reachable, and the operator's fix (more memory) is not an outage's.
 */
export function storeError(what: string, err: unknown): SkyError {
  if (err instanceof SkyError) return err;
  if (isFull(err)) {
    return new SkyError('store_full', `Redis is full (maxmemory reached): could not ${what}`, { cause: err });
  }
  return new SkyError('store_unavailable', `Redis is unavailable (${what})`, { cause: err });
}

/** Runs one piece of store work; whatever Redis throws comes out as storeError(). */
export async function guarded<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw storeError(what, err);
  }
}
