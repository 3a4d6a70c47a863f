import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp } from './apps';
import type { NodeMessage, NodeSpec } from './spec';

/**
 * One bench web node (a process of its own, apart from the load generator): the app variant of
 * SKY_BENCH_NODE on a free loopback port. Says `ready` over IPC; exits on `stop` or when run.ts goes away.
 */
const send = (message: NodeMessage): void => {
  process.send?.(message);
};

async function main(): Promise<void> {
  const spec = JSON.parse(process.env['SKY_BENCH_NODE'] ?? 'null') as NodeSpec | null;
  if (!spec) throw new Error('SKY_BENCH_NODE is not set');
  // Listen first: sky needs its external URL, which holds the port.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const { app, close } = await buildApp(spec, `http://127.0.0.1:${port}`);
  server.on('request', app);
  const stop = async (): Promise<void> => {
    server.closeAllConnections();
    server.close();
    await close().catch(() => undefined);
    // A normal exit, so --cpu-prof writes its profile.
    process.exit(0);
  };
  process.on('message', (message) => {
    if (message === 'stop') void stop();
  });
  process.on('disconnect', () => void stop());
  send({ type: 'ready', port });
}

main().catch((err: unknown) => {
  send({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
});
