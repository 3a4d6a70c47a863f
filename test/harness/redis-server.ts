import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort, redisServerBinary } from './global-setup';

/**
 * A redis-server of one test's own, which the test may stop, restart with its data, pause or limit,
 * without disturbing the Redis every other test shares.
 */
export class PrivateRedis {
  private child: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  static async start(): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort(), mkdtempSync(path.join(os.tmpdir(), 'sky-redis-fault-')));
    await redis.up();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server on the same port and directory: what it saved comes back. */
  async up(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      'yes',
    ];
    this.child = spawn(redisServerBinary(), args, { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (!(await accepts(this.port))) {
      if (Date.now() > deadline) throw new Error(`redis-server did not start on ${this.port}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops the server, saving its data first (SHUTDOWN SAVE), as an operator's restart would. */
  async down(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await this.command(['SHUTDOWN', 'SAVE']).catch(() => undefined); // the connection drops as it exits
    await exited;
    this.child = null;
  }

  /**
   * Kills the server (SIGKILL) and empties its directory, as a restart on a host without persistent
   * storage would: the next `up()` starts on the same port with no data.
   */
  async wipe(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    this.child = null;
    for (const name of readdirSync(this.dir))
      rmSync(path.join(this.dir, name), { recursive: true, force: true });
  }

  /** One command on a short-lived connection of the test's own. */
  command(args: [string, ...string[]]): Promise<unknown> {
    return redisCommand(this.port, args);
  }

  async stop(): Promise<void> {
    this.child?.kill('SIGKILL');
    this.child = null;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One command to the redis-server (or sentinel) on a loopback port, on a short-lived connection. */
export async function redisCommand(port: number, args: [string, ...string[]]): Promise<unknown> {
  const client = new Redis(port, '127.0.0.1', {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null, // a dead port fails the command instead of reconnecting forever
    connectTimeout: 2_000,
  });
  client.on('error', () => undefined); // the rejected promise below carries the error
  try {
    await client.connect();
    return await client.call(...args);
  } finally {
    client.disconnect();
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
