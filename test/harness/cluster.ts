import { execFile, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A local Redis Cluster of masters only, started for one test run (SPEC §2: hash tags are proven here). */
export interface LocalCluster {
  /** "127.0.0.1:port,…": the form of SKY_REDIS_CLUSTER. */
  seeds: string;
  pids: number[];
  dir: string;
}

/** Cluster bus ports are the client port + 10000 (Redis' fixed offset), so both must be free. */
const BUS_OFFSET = 10_000;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Ports whose bus port is free too; picked from the ephemeral range below 55536 so port+10000 exists. */
async function clusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < count && tries < 500; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 35_000);
    if (ports.includes(port) || ports.some((p) => Math.abs(p - port) === BUS_OFFSET)) continue;
    if ((await portIsFree(port)) && (await portIsFree(port + BUS_OFFSET))) ports.push(port);
  }
  if (ports.length < count) throw new Error('no free port pairs (port, port+10000) for a Redis Cluster');
  return ports;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} within ${timeoutMs / 1000} s`);
}

async function clusterInfo(cli: string, port: number): Promise<string> {
  const { stdout } = await run(cli, ['-h', '127.0.0.1', '-p', String(port), 'cluster', 'info']);
  return stdout;
}

/**
 * Starts `masters` redis-servers with --cluster-enabled yes (AOF on, as sky requires; config and AOF files in a temp dir),
 * joins them with `redis-cli --cluster create`, and waits until every node says cluster_state:ok.
 */
export async function startLocalCluster(serverBinary: string, masters = 3): Promise<LocalCluster> {
  const cli = path.join(path.dirname(serverBinary), 'redis-cli');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-redis-cluster-'));
  const ports = await clusterPorts(masters);
  const pids: number[] = [];
  try {
    for (const port of ports) {
      const child = spawn(
        serverBinary,
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          path.join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '5000',
          '--save',
          '',
          '--appendonly',
          'yes',
          '--appenddirname',
          `appendonly-${port}`,
          '--dir',
          dir,
        ],
        { stdio: 'ignore', detached: true },
      );
      child.unref();
      if (child.pid !== undefined) pids.push(child.pid);
    }
    for (const port of ports) {
      await waitFor(`redis-server did not answer on port ${port}`, async () => {
        const { stdout } = await run(cli, ['-h', '127.0.0.1', '-p', String(port), 'ping']);
        return stdout.trim() === 'PONG';
      });
    }
    await run(cli, [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const port of ports) {
      await waitFor(`the Redis Cluster node on port ${port} did not reach cluster_state:ok`, async () =>
        (await clusterInfo(cli, port)).includes('cluster_state:ok'),
      );
    }
  } catch (err) {
    await stopLocalCluster({ pids });
    throw err;
  }
  return { seeds: ports.map((p) => `127.0.0.1:${p}`).join(','), pids, dir };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Stops the servers and waits (up to 5 s) until they are gone, so their temp dir can be removed. */
export async function stopLocalCluster(cluster: Pick<LocalCluster, 'pids'>): Promise<void> {
  for (const pid of cluster.pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await waitFor('the Redis Cluster nodes did not stop', async () => !cluster.pids.some(alive), 5_000).catch(
    () => undefined,
  );
}
