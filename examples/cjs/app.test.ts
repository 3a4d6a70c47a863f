// The host app's test (CommonJS: no top-level await): log in through sky's fake Bitbucket with the
// helper sky ships, then call the app's guarded routes.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { FakeBitbucket, loginAs } from 'skymarshal-express/testing';
import { createApp } from './app';

async function main(): Promise<void> {
  const fake = await FakeBitbucket.start();
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const base = `http://127.0.0.1:${port}/ci`;
  const { app, close } = await createApp({
    externalUrl: base,
    bitbucketCloud: fake.connectorConfig(),
    mainTeam: { users: ['alice'] },
    redis: null,
    logLevel: 'silent',
  });
  server.on('request', app);
  let checks = 0;
  try {
    const alice = await loginAs(base, fake, 'alice');
    const list = await fetch(`${base}/api/v1/teams/main/pipelines`, { headers: alice.bearer });
    assert.equal(list.status, 200);
    assert.deepEqual(await list.json(), { team: 'main', viewer: 'Alice Admin', pipelines: [] });
    checks++;
    const other = await fetch(`${base}/api/v1/teams/main/pipelines`, {
      method: 'POST',
      headers: { authorization: 'Bearer not-a-token' },
    });
    assert.equal(other.status, 401);
    checks++;
    const created = await fetch(`${base}/api/v1/teams/main/pipelines`, {
      method: 'POST',
      headers: alice.bearer,
    });
    assert.equal(created.status, 201);
    checks++;
    console.log(`examples/cjs: ${checks} checks passed`);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await close();
    await fake.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
