import type { RedisClient } from './redis-connect';
import { guarded } from './guarded';
import type { Keys } from './keys';
import type { RateLimitRecords } from './records';

/* KEYS: counter. ARGV: window ms. The first request of a window starts its clock. */
const HIT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
`;

export class RedisRateLimitRecords implements RateLimitRecords {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
  ) {}

  hit(bucket: string, windowMs: number): Promise<{ count: number; resetMs: number }> {
    return guarded('count a request', async () => {
      const [count, ttl] = (await this.client.eval(HIT, 1, this.keys.rateLimit(bucket), windowMs)) as [
        number,
        number,
      ];
      return { count, resetMs: ttl > 0 ? ttl : windowMs };
    });
  }

  peek(bucket: string): Promise<{ count: number; resetMs: number }> {
    return guarded('read a request count', async () => {
      const key = this.keys.rateLimit(bucket);
      const [[, count], [, ttl]] = (await this.client.multi().get(key).pttl(key).exec()) as [
        [unknown, string | null],
        [unknown, number],
      ];
      return { count: Number(count ?? 0), resetMs: ttl > 0 ? ttl : 0 };
    });
  }
}
