import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startLocalCluster } from './cluster';
import { clearFigures, LONG } from './figures';

/**
 * Tests talk to a real Redis: REDIS_URL when set, else a private redis-server on a free port that
 * lives for this jest run only (AOF in a temporary folder), so runs never share state.
 * SKY_TEST_REDIS=cluster starts a private 3-master Redis Cluster instead and sets SKY_REDIS_CLUSTER,
 * which testRedis() prefers: the same tests then prove the hash tags of SPEC §2.
 */
export default async function globalSetup(): Promise<void> {
  const cluster = process.env['SKY_TEST_REDIS'] === 'cluster';
  // A long run (the one .ci/run makes) records the hardening figures afresh for docs/SECURITY.md.
  if (LONG && !cluster) clearFigures();
  if (!cluster && process.env['REDIS_URL']) return;
  const binary = redisServerBinary();
  if (cluster) {
    const started = await startLocalCluster(binary);
    process.env['SKY_REDIS_CLUSTER'] = started.seeds;
    process.env['SKY_TEST_REDIS_CLUSTER_PIDS'] = started.pids.join(',');
    process.env['SKY_TEST_REDIS_DIR'] = started.dir;
    return;
  }
  const server = await startRedisServer(binary);
  process.env['REDIS_URL'] = server.url;
  process.env['SKY_TEST_REDIS_PID'] = String(server.pid);
  process.env['SKY_TEST_REDIS_DIR'] = server.dir;
}

/** A private redis-server on a free loopback port, AOF on in a temporary folder (the bench uses it too). */
export async function startRedisServer(
  binary: string = redisServerBinary(),
): Promise<{ url: string; pid: number; dir: string }> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-redis-'));
  const child = spawn(
    binary,
    // AOF on and noeviction: what sky requires of production Redis (SPEC §2, §8), checked at start.
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--maxmemory-policy',
      'noeviction',
      '--dir',
      dir,
    ],
    { stdio: 'ignore', detached: true },
  );
  child.unref();
  await waitForPort(port);
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid ?? 0, dir };
}

/** The redis-server on PATH, or a message that says how to get one. */
export function redisServerBinary(): string {
  try {
    return execFileSync('which', ['redis-server'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'The tests need a Redis server: set REDIS_URL=redis://host:port, or install one ' +
        '(Debian: apt-get install -y redis-server) so the harness can start a private redis-server.',
    );
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not start on port ${port} within 10 s`);
}
