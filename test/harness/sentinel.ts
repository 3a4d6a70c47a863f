import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, redisServerBinary } from './global-setup';
import { redisCommand } from './redis-server';

/** Where a sentinel listens, in the shape ioredis' `sentinels` option takes. */
export interface SentinelAddress {
  host: string;
  port: number;
}

const HOST = '127.0.0.1';
const SENTINELS = 3;
/** Two of three sentinels must agree the master is down: one sentinel alone can never fail over. */
const QUORUM = 2;

/**
 * A Redis Sentinel set of one test's own: 1 master, 1 replica and 3 sentinels on free loopback ports,
 * so a test can kill the master and watch the product follow the failover without touching the Redis
 * every other test shares. The data nodes keep an AOF (fsync always), as the product refuses Redis
 * without persistence; the sentinels react within about a second (down-after-milliseconds 1000).
 */
export class SentinelSet {
  readonly sentinels: SentinelAddress[] = [];
  /** Every process this set started, by port: stop() kills them all, even after a half-done start(). */
  private readonly children = new Map<number, ChildProcess>();
  private readonly exits = new Map<number, string>();
  private stopped = false;

  private constructor(
    readonly name: string,
    private readonly dir: string,
  ) {}

  /** Resolves once the replica is in sync and every sentinel knows the replica and the other sentinels. */
  static async start(name = 'skymaster'): Promise<SentinelSet> {
    const set = new SentinelSet(name, mkdtempSync(path.join(os.tmpdir(), 'sky-redis-sentinel-')));
    try {
      await set.boot();
    } catch (err) {
      await set.stop();
      throw err;
    }
    return set;
  }

  /** "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3": the form of a sentinels list in the environment. */
  get sentinelsEnv(): string {
    return this.sentinels.map((s) => `${s.host}:${s.port}`).join(',');
  }

  /** The master's port as the first sentinel that answers reports it (what a client would be told). */
  async masterPort(): Promise<number> {
    let lastError: unknown = new Error('no sentinels');
    for (const sentinel of this.sentinels) {
      try {
        return await this.reportedMaster(sentinel.port);
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  /** kill -9 of the current master (no chance to say goodbye); resolves with its port once it is gone. */
  async killMaster(): Promise<number> {
    const port = await this.masterPort();
    const child = this.children.get(port);
    if (!child) throw new Error(`the sentinels report a master on ${port}, which this set did not start`);
    await kill(child);
    this.children.delete(port);
    return port;
  }

  /**
   * Resolves with the new master's port once every sentinel reports a master other than oldPort and
   * that server answers ROLE as a master. All sentinels, not one: a client may ask any of them, and one
   * still naming the dead master would send it there.
   */
  async waitForFailover(oldPort: number, timeoutMs = 30_000): Promise<number> {
    let last = 'no sentinel answered';
    let newPort = 0;
    await this.waitFor(
      `the sentinels did not fail over from ${oldPort}`,
      timeoutMs,
      async () => {
        const reported = await Promise.all(this.sentinels.map((s) => this.reportedMaster(s.port)));
        last = `sentinels report ${reported.join(', ')}`;
        const port = reported[0];
        if (port === undefined || port === oldPort || reported.some((p) => p !== port)) return false;
        const role = await this.command(port, ['ROLE']);
        last = `sentinels report ${port}, whose ROLE is ${Array.isArray(role) ? String(role[0]) : String(role)}`;
        newPort = port;
        return Array.isArray(role) && role[0] === 'master';
      },
      () => last,
    );
    return newPort;
  }

  /** One command on a short-lived connection of the test's own, to a data node or a sentinel. */
  command(port: number, args: [string, ...string[]]): Promise<unknown> {
    return redisCommand(port, args);
  }

  /** SIGKILLs every process of the set, waits until they are gone, and removes their directories. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.children.values()].map(kill));
    this.children.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async boot(): Promise<void> {
    const [masterPort, replicaPort, ...sentinelPorts] = await distinctFreePorts(2 + SENTINELS);
    if (masterPort === undefined || replicaPort === undefined) throw new Error('no free ports');

    this.spawnDataNode(masterPort, []);
    this.spawnDataNode(replicaPort, ['--replicaof', HOST, String(masterPort)]);
    let last = '';
    await this.waitFor(
      `the replica on ${replicaPort} did not sync with ${masterPort}`,
      20_000,
      async () => {
        const master = info(String(await this.command(masterPort, ['INFO', 'replication'])));
        const replica = info(String(await this.command(replicaPort, ['INFO', 'replication'])));
        last = `master connected_slaves:${master['connected_slaves']}, replica master_link_status:${replica['master_link_status']}`;
        return master['connected_slaves'] === '1' && replica['master_link_status'] === 'up';
      },
      () => last,
    );

    // Started after the replica is in sync, so each sentinel's first INFO of the master already lists it.
    for (const port of sentinelPorts) {
      this.spawnSentinel(port, masterPort);
      this.sentinels.push({ host: HOST, port });
    }
    for (const port of sentinelPorts) {
      await this.waitFor(
        `the sentinel on ${port} did not see the replica and the ${SENTINELS - 1} other sentinels`,
        20_000,
        async () => {
          const master = fields(await this.command(port, ['SENTINEL', 'MASTER', this.name]));
          last = `num-slaves ${master['num-slaves']}, num-other-sentinels ${master['num-other-sentinels']}`;
          return Number(master['num-slaves']) >= 1 && Number(master['num-other-sentinels']) === SENTINELS - 1;
        },
        () => last,
      );
    }
  }

  private spawnDataNode(port: number, extra: string[]): void {
    const dir = this.nodeDir(`redis-${port}`);
    this.spawnTracked(port, [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
      // Redis 7 defaults to diskless sync after a 5 s delay; the RDB on disk makes the first sync immediate.
      '--repl-diskless-sync',
      'no',
      ...extra,
    ]);
  }

  /** Sentinel rewrites its config file (its id, the replicas and sentinels it found), so it gets its own. */
  private spawnSentinel(port: number, masterPort: number): void {
    const dir = this.nodeDir(`sentinel-${port}`);
    const conf = path.join(dir, 'sentinel.conf');
    const name = this.name;
    writeFileSync(
      conf,
      [
        `port ${port}`,
        `bind ${HOST}`,
        `dir ${dir}`,
        `sentinel monitor ${name} ${HOST} ${masterPort} ${QUORUM}`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 10000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    this.spawnTracked(port, [conf, '--sentinel']);
  }

  private spawnTracked(port: number, args: string[]): void {
    if (this.stopped) throw new Error('the sentinel set was stopped while starting');
    const child = spawn(redisServerBinary(), args, { stdio: 'ignore' });
    this.children.set(port, child);
    child.once('error', (err) => this.exits.set(port, err.message));
    child.once('exit', (code, signal) => this.exits.set(port, `exited with ${signal ?? `code ${code}`}`));
  }

  private nodeDir(name: string): string {
    const dir = path.join(this.dir, name);
    mkdirSync(dir);
    return dir;
  }

  private async reportedMaster(sentinelPort: number): Promise<number> {
    const reply = await this.command(sentinelPort, ['SENTINEL', 'get-master-addr-by-name', this.name]);
    const port = Array.isArray(reply) ? Number(reply[1]) : NaN;
    if (!Number.isInteger(port))
      throw new Error(`the sentinel on ${sentinelPort} knows no master ${this.name}`);
    return port;
  }

  /** Polls check until it holds; fails early, and says so, when a process of the set has died meanwhile. */
  private async waitFor(
    what: string,
    timeoutMs: number,
    check: () => Promise<boolean>,
    last: () => string,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const died = [...this.children.keys()].filter((port) => this.exits.has(port));
      if (died.length > 0) {
        const why = died.map((port) => `${port} ${this.exits.get(port)}`).join(', ');
        throw new Error(`${what}: a process of the sentinel set died (${why})`);
      }
      let lastError = '';
      try {
        if (await check()) return;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() > deadline) {
        const seen = [last(), lastError].filter(Boolean).join('; ');
        throw new Error(`${what} within ${timeoutMs / 1000} s${seen ? ` (last: ${seen})` : ''}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** freePort() closes its probe before returning, so two calls may hand out the same port: skip repeats. */
async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let tries = 0; ports.size < count && tries < count * 20; tries++) ports.add(await freePort());
  if (ports.size < count) throw new Error(`could not find ${count} distinct free ports`);
  return [...ports];
}

function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined)
    return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
}

/** INFO's "key:value" lines as a record. */
function info(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) out[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  return out;
}

/** A map reply (SENTINEL MASTER) as a record, whether it arrives as a flat [k, v, …] array or an object. */
function fields(reply: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
  } else if (reply && typeof reply === 'object') {
    for (const [k, v] of Object.entries(reply)) out[k] = String(v);
  }
  return out;
}
