import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FakeBitbucket } from '../../lib/testing';
import { freePort } from './global-setup';

const ROOT = path.join(__dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');

export interface NodeProcess {
  /** Where this process listens (its own port). */
  url: string;
  /** Everything it printed, for assertions and for failure messages. */
  output(): string;
  /** SIGTERM, and resolves when the process has exited. */
  stop(): Promise<void>;
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

/**
 * `npm start`'s web node (lib/server.ts) as its own OS process, configured only by environment, on a
 * free loopback port. Resolves once it logs that it listens.
 */
export async function spawnWebNode(env: Record<string, string>, port?: number): Promise<NodeProcess> {
  port ??= await freePort();
  let output = '';
  const child: ChildProcess = spawn(TSX, [path.join(ROOT, 'lib', 'server.ts')], {
    cwd: ROOT,
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '',
      LOG_LEVEL: 'info',
      CONCOURSE_BIND_IP: '127.0.0.1',
      CONCOURSE_BIND_PORT: String(port),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
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
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
