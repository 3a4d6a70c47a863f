import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';

const TASKSET = '/usr/bin/taskset';

/**
 * On a small machine the load generator and the node under test would share cores, and what one
 * measured would be their fight. With two or more cores and taskset (util-linux), the bench process
 * (autocannon) and Redis stay on core 0 and every web node gets the other cores to itself.
 */
export const pinning = os.cpus().length >= 2 && existsSync(TASKSET) && process.env['SKY_BENCH_PIN'] !== '0';

const NODE_CORES = `1-${os.cpus().length - 1}`;

/** Pins a running process (this one, Redis) to core 0. */
export function pinToLoadCore(pid: number): void {
  if (pinning) execFileSync(TASKSET, ['-cp', '0', String(pid)], { stdio: 'ignore' });
}

/** The command that starts a web node on its own cores: [file, ...args]. */
export function onNodeCores(file: string, args: string[]): [string, string[]] {
  return pinning ? [TASKSET, ['-c', NODE_CORES, file, ...args]] : [file, args];
}

export function describePinning(): string {
  return pinning
    ? `load generator and Redis pinned to core 0, each web node to core(s) ${NODE_CORES} (taskset)`
    : 'no CPU pinning (one core, no taskset, or SKY_BENCH_PIN=0)';
}
