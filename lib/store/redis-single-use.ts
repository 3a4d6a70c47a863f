import type { RedisClient } from './redis-connect';
import { guarded } from './guarded';
import type { Keys } from './keys';
import type { SingleUseRecords } from './records';

export class RedisSingleUseRecords implements SingleUseRecords {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
  ) {}

  put(id: string, value: string, ttlMs: number): Promise<boolean> {
    return guarded('store a single-use value', async () => {
      const ttl = Math.max(1, Math.ceil(ttlMs));
      return (await this.client.set(this.keys.singleUse(id), value, 'PX', ttl, 'NX')) === 'OK';
    });
  }

  take(id: string): Promise<string | null> {
    return guarded('redeem a single-use value', () => this.client.getdel(this.keys.singleUse(id)));
  }
}
