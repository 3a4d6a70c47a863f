import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';
import { SkyError } from '../errors';
import type { ClockReading } from '../clock';
import { guarded } from './guarded';
import type { StoreRequirements } from './records';
import type { RedisClient } from './redis-connect';

/** A write Redis took but no replica confirmed in time: not reported as done (it may still take effect). */
export class UnconfirmedWrite extends SkyError {
  constructor(what: string, waitMs: number) {
    super(
      'store_unavailable',
      `no Redis replica confirmed the write (${what}) within ${waitMs} ms: it is not reported as done (SKY_REDIS_REPLICA_WAIT)`,
    );
  }
}

/** Writer connections for acknowledged writes (several: a WAIT that times out holds its one for the wait). */
const WRITERS = 4;

/** The connection of `client` that holds `key`: WAIT counts the writes of the connection it runs on. */
function nodeOf(client: RedisClient, key: string): Redis | undefined {
  if (!(client instanceof Cluster)) return client;
  const owner = client.slots[calculateSlot(key)]?.[0];
  return client.nodes('master').find((node) => nameOf(node) === owner);
}

/** How messages name a server: Sentinel's master by its name (its address changes with a failover). */
const nameOf = (node: Redis): string =>
  node.options.sentinels
    ? `master '${node.options.name ?? ''}' (Sentinel)`
    : `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;

/** `CONFIG GET name` → its value, or null when the server refuses CONFIG. */
async function configValue(node: Redis, name: string): Promise<string | null> {
  try {
    const reply = (await node.call('CONFIG', 'GET', name)) as string[];
    return reply[1] ?? '';
  } catch (err) {
    if (err instanceof Error && /ERR unknown command|NOPERM|unknown subcommand/i.test(err.message))
      return null;
    throw err;
  }
}

/**
 * The durability side of the Redis store: the check of persistence and eviction policy, the replica
 * count of each master, and `WAIT` after the writes sky acknowledges (a revocation, a refresh rotation,
 * a team write), so a Sentinel or Cluster failover cannot undo an answer sky already gave.
 */
export class RedisDurability {
  /** Master ("host:port") → replicas it reported at the last count. */
  private replicas = new Map<string, number>();
  /** Connections of their own for acknowledged writes: WAIT blocks the connection it runs on. */
  private readonly writers: RedisClient[] = [];
  private nextWriter = 0;

  constructor(
    private readonly client: RedisClient,
    /** SKY_REDIS_REPLICA_WAIT: how long one write waits for a replica; 0 = never waits. */
    private readonly waitMs: number,
  ) {
    // A reconnect may be to a new master (a failover): count its replicas before the next write.
    client.on('ready', () => void this.recount().catch(() => undefined));
  }

  private masters(client: RedisClient = this.client): Redis[] {
    return client instanceof Cluster ? client.nodes('master') : [client];
  }

  /** Persistence on and `maxmemory-policy noeviction` on every master; replica counts refreshed. */
  check(): Promise<StoreRequirements> {
    return guarded('check the Redis settings', async () => {
      const problems: string[] = [];
      const unchecked: string[] = [];
      for (const node of this.masters()) {
        const name = nameOf(node);
        const [appendonly, save, policy] = [
          await configValue(node, 'appendonly'),
          await configValue(node, 'save'),
          await configValue(node, 'maxmemory-policy'),
        ];
        if (appendonly === null || save === null || policy === null) {
          unchecked.push(
            `Redis at ${name} does not allow CONFIG GET: sky could not check that it keeps its data on disk (appendonly yes or save) and never evicts keys (maxmemory-policy noeviction); make sure it does`,
          );
          continue;
        }
        if (appendonly !== 'yes' && save.trim() === '') {
          problems.push(
            `Redis at ${name} keeps nothing on disk (appendonly no, save ''): a restart loses every revocation and team config; fix: CONFIG SET appendonly yes, and 'appendonly yes' in redis.conf`,
          );
        }
        if (policy !== 'noeviction') {
          problems.push(
            `Redis at ${name} evicts keys when full (maxmemory-policy ${policy}): it can drop revocations and team configs; fix: CONFIG SET maxmemory-policy noeviction, and 'maxmemory-policy noeviction' in redis.conf`,
          );
        }
      }
      await this.recount();
      return { problems, unchecked, replicas: this.replicaCount };
    });
  }

  /** Counts every master's replicas (INFO replication), on the node's own connection. */
  private async recount(): Promise<void> {
    const replicas = new Map<string, number>();
    for (const node of this.masters()) {
      const info = String(await node.info('replication'));
      replicas.set(nameOf(node), Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0));
    }
    this.replicas = replicas;
  }

  /** The total replicas of every master, as last counted. */
  get replicaCount(): number {
    let total = 0;
    for (const n of this.replicas.values()) total += n;
    return total;
  }

  private hasReplicas(key: string): boolean {
    const node = nodeOf(this.client, key);
    return node !== undefined && (this.replicas.get(nameOf(node)) ?? 0) > 0;
  }

  /**
   * A write sky acknowledges (a revocation, a refresh rotation, a team write). When the master holding
   * `key` has replicas, the write runs on a writer connection and one replica must confirm it (WAIT 1)
   * within the wait. Unconfirmed, the replicas are counted again (a failover may have left the new
   * master with none: then there is nothing to wait for); still some, the write is not reported as
   * done (UnconfirmedWrite, 503).
   */
  async acknowledged<T>(what: string, key: string, write: (client: RedisClient) => Promise<T>): Promise<T> {
    if (this.waitMs === 0 || !this.hasReplicas(key)) return write(this.client);
    const writer = this.writer();
    const result = await write(writer);
    const node = nodeOf(writer, key);
    const confirmed = node ? Number(await node.call('WAIT', '1', String(this.waitMs))) : 0;
    if (confirmed >= 1) return result;
    await this.recount();
    if (!this.hasReplicas(key)) return result;
    throw new UnconfirmedWrite(what, this.waitMs);
  }

  /** Round robin over a few writers, made on first need; their command timeout allows for the wait. */
  private writer(): RedisClient {
    if (this.writers.length < WRITERS) {
      const commandTimeout = this.waitMs + 5_000;
      const writer =
        this.client instanceof Cluster
          ? this.client.duplicate(undefined, {
              redisOptions: { ...this.client.options.redisOptions, commandTimeout },
            } as Parameters<Cluster['duplicate']>[1])
          : this.client.duplicate({ commandTimeout });
      writer.on('error', () => undefined); // the command connection reports Redis errors already
      this.writers.push(writer);
      return writer;
    }
    this.nextWriter = (this.nextWriter + 1) % this.writers.length;
    return this.writers[this.nextWriter] as RedisClient;
  }

  close(): void {
    for (const writer of this.writers.splice(0)) writer.disconnect();
  }

  /** Redis's clock (TIME), in epoch milliseconds, with the round trip it took. */
  time(): Promise<ClockReading> {
    return guarded('read the Redis clock', async () => {
      const node = this.masters()[0];
      if (!node) throw new Error('no Redis master is known yet');
      const sentAt = Date.now();
      const [seconds, micros] = (await node.call('TIME')) as [string, string];
      return {
        redisMs: Number(seconds) * 1000 + Math.floor(Number(micros) / 1000),
        sentAt,
        receivedAt: Date.now(),
      };
    });
  }
}
