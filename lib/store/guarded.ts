import { SkyError } from '../errors';

/** Redis errors become one clear 503, with the driver's error kept as the cause for the log. */
export async function guarded<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof SkyError) throw err;
    throw new SkyError('store_unavailable', `Redis is unavailable (${what})`, { cause: err });
  }
}
