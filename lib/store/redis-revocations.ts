import type { Cluster, Redis } from 'ioredis';
import type { StoreEvent } from './events';
import { guarded } from './guarded';
import type { Keys } from './keys';
import type { RevocationRecords, RevocationSnapshot } from './records';

/* KEYS: revoked users. ARGV: subject, not-before. Stores and returns the later of the old and new time. */
const REVOKE_USER = `
local previous = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local effective = math.max(previous, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], tostring(effective))
return effective
`;

type Client = Redis | Cluster;

/** Pairs of a ZRANGE … WITHSCORES answer. */
function pairs(flat: string[]): [string, number][] {
  const out: [string, number][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as string, Number(flat[i + 1])]);
  return out;
}

export class RedisRevocationRecords implements RevocationRecords {
  constructor(
    private readonly client: Client,
    private readonly keys: Keys,
  ) {}

  private publish(event: StoreEvent): Promise<number> {
    return this.client.publish(this.keys.events, JSON.stringify(event));
  }

  revokeFamily(familyId: string, untilMs: number): Promise<void> {
    return guarded('end a login family', async () => {
      // GT: a later end never gets shortened by an earlier one arriving late.
      await this.client.zadd(this.keys.revokedFamilies, 'GT', untilMs, familyId);
      await this.publish({ type: 'revoke-family', sid: familyId, until: untilMs });
    });
  }

  revokeUser(sub: string, notBefore: number): Promise<void> {
    return guarded('revoke user', async () => {
      // Atomically keep the later time: two nodes revoking at once, or an older revocation arriving
      // late, must never lower it and re-admit tokens.
      const effective = Number(
        await this.client.eval(REVOKE_USER, 1, this.keys.revokedUsers, sub, notBefore),
      );
      await this.publish({ type: 'revoke-user', sub, notBefore: effective });
    });
  }

  load(nowMs: number): Promise<RevocationSnapshot> {
    return guarded('load revocations', async () => {
      const { revokedTokens, revokedFamilies, revokedUsers } = this.keys;
      await this.client.zremrangebyscore(revokedTokens, '-inf', nowMs);
      await this.client.zremrangebyscore(revokedFamilies, '-inf', nowMs);
      const tokens = pairs(await this.client.zrange(revokedTokens, '0', '-1', 'WITHSCORES'));
      const families = pairs(await this.client.zrange(revokedFamilies, '0', '-1', 'WITHSCORES'));
      const users = Object.entries(await this.client.hgetall(revokedUsers)).map(
        ([sub, nbf]): [string, number] => [sub, Number(nbf)],
      );
      return { tokens, families, users };
    });
  }
}
