import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FakeBitbucket } from '../../lib/testing';
import { freePort } from './global-setup';

const ROOT = path.join(__dirname, '..', '..');

/** How a web node process ended, and how long after the signal sent to it (0 when none was sent). */
export interface NodeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
}

export interface NodeProcess {
  /** Where this process listens (its own port). */
  url: string;
  /** Everything it printed, for assertions and for failure messages. */
  output(): string;
  /** Resolves once the process has exited, however it ended. */
  exited: Promise<NodeExit>;
  /** Sends `signal` to the node's own process (a no-op once it has exited); `exited` says what came of it. */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, and resolves when the process has exited. */
  stop(): Promise<NodeExit>;
}

/** A signing key in a file, as CONCOURSE_SESSION_SIGNING_KEY takes it; nodes sharing it are interchangeable. */
export function signingKeyFile(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-key-'));
  const file = path.join(dir, 'session_signing_key');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return file;
}

/** What a web node needs to log in against the fake Bitbucket, with alice as the owner of main. */
export function fakeBitbucketEnv(fake: FakeBitbucket): Record<string, string> {
  return {
    CONCOURSE_SESSION_SIGNING_KEY: signingKeyFile(),
    CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID: fake.client.id,
    CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET: fake.client.secret,
    CONCOURSE_BITBUCKET_CLOUD_WEB_URL: fake.webUrl,
    CONCOURSE_BITBUCKET_CLOUD_API_URL: fake.apiUrl,
    CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice',
  };
}

/** Where Debian's `faketime` package (and a `make install` from source) puts libfaketime. */
const LIBFAKETIME_CANDIDATES = [
  `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/faketime/libfaketime.so.1`,
  '/usr/lib/faketime/libfaketime.so.1',
  '/usr/local/lib/faketime/libfaketime.so.1',
];

/**
 * The environment that runs a process, and everything it spawns, with its wall clock `offsetSeconds`
 * off (positive: fast) under libfaketime, without a wrapper (so a SIGTERM reaches the process itself):
 * - LD_PRELOAD: the library. The tsx launcher passes its environment on, so the node it spawns to run
 *   the script (and any process that node spawns) is faked too.
 * - FAKETIME=+Ns: a relative offset; the clock keeps ticking at the real rate. This fakes the wall
 *   clock (Date.now(), new Date(), gettimeofday), not file timestamps from fs.stat (libuv uses statx,
 *   which libfaketime does not intercept): a file written now has an mtime N s "in the past".
 * - FAKETIME_DONT_FAKE_MONOTONIC=1: CLOCK_MONOTONIC stays real, so libuv timers, process.hrtime() and
 *   performance.now() are untouched. Without it libfaketime shifts the monotonic clock to wall-clock
 *   scale and must translate every timed pthread wait, the known source of hangs in threaded
 *   programs (node is: V8 platform threads and the libuv pool).
 * FAKETIME_NO_CACHE is not needed: the cache only delays re-reading a changing spec, and this one is
 * fixed for the process's life.
 */
export function fakeClockEnv(offsetSeconds: number): Record<string, string> {
  const lib = LIBFAKETIME_CANDIDATES.find((file) => existsSync(file));
  if (!lib) {
    throw new Error(
      `libfaketime not found (looked for ${LIBFAKETIME_CANDIDATES.join(', ')}): apt-get install -y faketime`,
    );
  }
  return {
    LD_PRELOAD: lib,
    FAKETIME: `${offsetSeconds < 0 ? '-' : '+'}${Math.abs(offsetSeconds)}s`,
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  };
}

export interface SpawnWebNodeOptions {
  /** Run the node with its wall clock this many seconds off (positive: fast) under libfaketime. */
  clockOffsetSeconds?: number;
}

/**
 * `npm start`'s web node (lib/server.ts) as its own OS process, configured only by environment, on a
 * free loopback port. Resolves once it logs that it listens. With `clockOffsetSeconds` it runs under
 * libfaketime (see fakeClockEnv); the spawn command is the same, only the environment differs.
 */
export async function spawnWebNode(
  env: Record<string, string>,
  port?: number,
  options: SpawnWebNodeOptions = {},
): Promise<NodeProcess> {
  const fakeClock = options.clockOffsetSeconds === undefined ? {} : fakeClockEnv(options.clockOffsetSeconds);
  port ??= await freePort();
  let output = '';
  // Node itself with tsx as a loader (no launcher process between): a signal reaches the node, kill -9 too.
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'lib', 'server.ts')],
    {
      cwd: ROOT,
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? '',
        LOG_LEVEL: 'info',
        CONCOURSE_BIND_IP: '127.0.0.1',
        CONCOURSE_BIND_PORT: String(port),
        ...env,
        ...fakeClock,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let signalledAt = 0;
  const exited = new Promise<NodeExit>((resolve) =>
    child.once('exit', (code, signal) => {
      // libfaketime in the first faked process (the node, whose pid this is) creates a semaphore and a
      // shared-memory object and removes them only from its exit handler: a process killed by a signal
      // never runs it.
      if ('LD_PRELOAD' in fakeClock && child.pid !== undefined) {
        rmSync(`/dev/shm/sem.faketime_sem_${child.pid}`, { force: true });
        rmSync(`/dev/shm/faketime_shm_${child.pid}`, { force: true });
      }
      resolve({ code, signal, ms: signalledAt === 0 ? 0 : Date.now() - signalledAt });
    }),
  );
  const kill = (signal: NodeJS.Signals): void => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    signalledAt ||= Date.now();
    child.kill(signal);
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`web node did not start within 20 s:\n${output}`)),
      20_000,
    );
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes('"web node listening"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`web node exited with ${code} before listening:\n${output}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    exited,
    kill,
    stop() {
      kill('SIGTERM');
      return exited;
    },
  };
}
