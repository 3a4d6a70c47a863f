import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { onNodeCores } from './cores';
import type { NodeMessage, NodeSpec } from './spec';

const run = promisify(execFile);
const ROOT = path.join(__dirname, '..');
/** Compiled web nodes live in node_modules/.cache (ignored by git), so `require` finds the dependencies. */
const OUT = path.join(ROOT, 'node_modules', '.cache', 'sky-bench');
const ENTRY = path.join(OUT, 'bench', 'server.js');

/**
 * Web nodes run compiled JavaScript on plain node, as in production: a TypeScript loader in the node
 * would add its own CPU and ~30 MB of RSS to what is measured. Incremental, so a rerun takes seconds.
 */
export async function buildNodes(log: (line: string) => void): Promise<void> {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const args = [tsc, '-p', path.join(ROOT, 'bench', 'tsconfig.json'), '--outDir', OUT];
  try {
    await run(process.execPath, [...args, '--tsBuildInfoFile', path.join(OUT, 'tsbuildinfo')], { cwd: ROOT });
  } catch (err) {
    // Type errors still emit; work in progress elsewhere in the tree must not stop a bench run.
    if (!existsSync(ENTRY)) throw err;
    const out = (err as { stdout?: string }).stdout ?? '';
    log(
      `warning: tsc reported errors; benchmarking what it emitted\n${out.split('\n').slice(0, 5).join('\n')}`,
    );
  }
  // The pages' style sheet and scripts are read from beside the compiled pages (as `npm run build` does).
  const assets = path.join('lib', 'http', 'pages', 'assets');
  cpSync(path.join(ROOT, assets), path.join(OUT, assets), { recursive: true });
}

export interface BenchNode {
  url: string;
  pid: number;
  spec: NodeSpec;
  stop(): Promise<void>;
}

export interface NodeFlags {
  /** Write a V8 CPU profile into this directory when the node stops. */
  cpuProfDir?: string;
  exposeGc?: boolean;
}

/** Starts a web node process and resolves when it listens. */
export function startNode(spec: NodeSpec, flags: NodeFlags = {}): Promise<BenchNode> {
  const argv = [
    ...(flags.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', flags.cpuProfDir] : []),
    ...(flags.exposeGc ? ['--expose-gc'] : []),
    ENTRY,
  ];
  const [file, args] = onNodeCores(process.execPath, argv);
  const child = spawn(file, args, {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production', SKY_BENCH_NODE: JSON.stringify(spec) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bench node (${spec.variant}) did not start within 30 s`));
    }, 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`bench node (${spec.variant}) exited with ${code} before it was ready`));
    });
    child.on('message', (message: NodeMessage) => {
      clearTimeout(timer);
      if (message.type === 'failed') {
        reject(new Error(`bench node (${spec.variant}) failed: ${message.message}`));
        return;
      }
      child.removeAllListeners('exit');
      resolve({
        url: `http://127.0.0.1:${message.port}`,
        pid: child.pid ?? 0,
        spec,
        stop: () => stopChild(child),
      });
    });
  });
}

/** Asks the node to exit (so a CPU profile gets written), then kills that one process if it lingers. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.connected) child.send('stop');
    else child.kill('SIGTERM');
  });
}

/**
 * CPU time (user + system, µs) a process has used, from /proc (Linux), or undefined elsewhere. Its
 * difference over a run, per request, is the node's cost per request, which other work on a shared
 * machine slows less than it slows throughput.
 */
export function cpuMicros(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of proc(5) (utime, stime), in clock ticks of 10 ms on Linux.
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return undefined;
  }
}
