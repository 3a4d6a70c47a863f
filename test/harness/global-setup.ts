import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Tests talk to a real Redis: REDIS_URL when set, else a private redis-server on a free port that
 * lives for this jest run only (no disk persistence), so runs never share state.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env['REDIS_URL']) return;
  let binary: string;
  try {
    binary = execFileSync('which', ['redis-server'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'The tests need a Redis server: set REDIS_URL=redis://host:port, or install one ' +
        '(Debian: apt-get install -y redis-server) so the harness can start a private redis-server.',
    );
  }
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-redis-'));
  const child = spawn(
    binary,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore', detached: true },
  );
  child.unref();
  await waitForPort(port);
  process.env['REDIS_URL'] = `redis://127.0.0.1:${port}`;
  process.env['SKY_TEST_REDIS_PID'] = String(child.pid);
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

async function waitForPort(port: number): Promise<void> {
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
