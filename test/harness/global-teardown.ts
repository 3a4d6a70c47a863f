import { rmSync } from 'node:fs';
import { stopLocalCluster } from './cluster';
import { LONG, writeSecurityFigures } from './figures';

export default async function globalTeardown(): Promise<void> {
  // What the hardening tests of a long run measured goes into docs/SECURITY.md (the cluster run is a subset).
  if (LONG && process.env['SKY_TEST_REDIS'] !== 'cluster') writeSecurityFigures();
  const pid = Number(process.env['SKY_TEST_REDIS_PID']);
  if (pid) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const clusterPids = process.env['SKY_TEST_REDIS_CLUSTER_PIDS'];
  if (clusterPids) await stopLocalCluster({ pids: clusterPids.split(',').map(Number) });
  const dir = process.env['SKY_TEST_REDIS_DIR'];
  // Only the temp dirs the setup made (no persistence, so nothing in them is worth keeping).
  if (dir && /sky-redis-/.test(dir)) rmSync(dir, { recursive: true, force: true });
}
