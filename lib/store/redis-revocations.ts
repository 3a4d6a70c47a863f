import type { StoreEvent } from './events';
import { guarded, isFull } from './guarded';
import type { Keys } from './keys';
import { UnconfirmedWrite, type RedisDurability } from './redis-durability';
import type { RevocationCounts, RevocationCutoffs, RevocationRecords, RevocationSnapshot } from './records';
import type { RedisClient } from './redis-connect';

/* KEYS: revoked users. ARGV: subject, not-before. Stores and returns the later of the old and new time. */
const REVOKE_USER = `
local previous = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local effective = math.max(previous, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], tostring(effective))
return effective
`;

/* KEYS: revoked families. ARGV: family, until (ms). Stores and returns the later of the old and new end. */
const REVOKE_FAMILY = `
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
return redis.call('ZSCORE', KEYS[1], ARGV[1])
`;

/*
 * KEYS: revoked users. ARGV: cutoff (epoch s). Drops not-befores older than the cutoff in one step, so
 * a revocation raised meanwhile by another node is never dropped with the old value.
 */
const TRIM_USERS = `
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  if (tonumber(flat[i + 1]) or 0) < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], flat[i]) end
end
return redis.call('HGETALL', KEYS[1])
`;

/** Pairs of a flat [k, v, k, v …] answer (ZRANGE … WITHSCORES, HGETALL). */
function pairs(flat: string[]): [string, number][] {
  const out: [string, number][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as string, Number(flat[i + 1])]);
  return out;
}

export class RedisRevocationRecords implements RevocationRecords {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly durability: RedisDurability,
  ) {}

  private publish(event: StoreEvent): Promise<number> {
    return this.client.publish(this.keys.events, JSON.stringify(event));
  }

  /**
   * A revocation: written, confirmed by a replica where there are any, and told to every node. A full
   * Redis (OOM under noeviction) refuses the write but still delivers PUBLISH, and a write no replica
   * confirmed is on the master: either way every node refuses the tokens at once (their store checks
   * write the revocation back should Redis lack it), and the caller still hears the failure.
   */
  private async write(
    what: string,
    key: string,
    work: (client: RedisClient) => Promise<unknown>,
    event: () => StoreEvent,
  ): Promise<void> {
    try {
      await this.durability.acknowledged(what, key, work);
    } catch (err) {
      if (isFull(err) || err instanceof UnconfirmedWrite) await this.publish(event()).catch(() => 0);
      throw err;
    }
    await this.publish(event());
  }

  revokeFamily(familyId: string, untilMs: number): Promise<void> {
    const key = this.keys.revokedFamilies;
    return guarded('end a login family', async () => {
      // GT: a later end never gets shortened by an earlier one arriving late; every node hears the one in force.
      let until = untilMs;
      await this.write(
        'end a login family',
        key,
        async (c) => {
          until = Number(await c.eval(REVOKE_FAMILY, 1, key, familyId, untilMs));
        },
        () => ({ type: 'revoke-family', sid: familyId, until }),
      );
    });
  }

  revokeUser(sub: string, notBefore: number): Promise<void> {
    return guarded('revoke user', async () => {
      // Atomically keep the later time: two nodes revoking at once, or an older revocation arriving
      // late, must never lower it and re-admit tokens.
      const key = this.keys.revokedUsers;
      let effective = notBefore;
      await this.write(
        'revoke a user',
        key,
        async (c) => {
          effective = Number(await c.eval(REVOKE_USER, 1, key, sub, notBefore));
        },
        () => ({ type: 'revoke-user', sub, notBefore: effective }),
      );
    });
  }

  restoreToken(jti: string, expMs: number): Promise<void> {
    const key = this.keys.revokedTokens;
    return guarded('restore a revoked token', async () => {
      await this.durability.acknowledged('restore a revoked token', key, (c) =>
        c.zadd(key, 'GT', expMs, jti),
      );
    });
  }

  load(cut: RevocationCutoffs): Promise<RevocationSnapshot> {
    return guarded('load revocations', async () => {
      const { revokedTokens, revokedFamilies, revokedUsers } = this.keys;
      // Exclusive bounds: an entry exactly at the cutoff still covers a token (the verifier's `<=`).
      await this.client.zremrangebyscore(revokedTokens, '-inf', `(${cut.tokens}`);
      await this.client.zremrangebyscore(revokedFamilies, '-inf', `(${cut.families}`);
      const tokens = pairs(await this.client.zrange(revokedTokens, '0', '-1', 'WITHSCORES'));
      const families = pairs(await this.client.zrange(revokedFamilies, '0', '-1', 'WITHSCORES'));
      const users = pairs((await this.client.eval(TRIM_USERS, 1, revokedUsers, cut.users)) as string[]);
      return { tokens, families, users };
    });
  }

  counts(): Promise<RevocationCounts> {
    return guarded('count revocations', async () => {
      const [tokens, families, users] = await Promise.all([
        this.client.zcard(this.keys.revokedTokens),
        this.client.zcard(this.keys.revokedFamilies),
        this.client.hlen(this.keys.revokedUsers),
      ]);
      return { tokens, families, users };
    });
  }
}
