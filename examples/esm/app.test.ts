// The host app's test: log in through sky's fake Bitbucket with the helper sky ships (no redirect loop,
// no cookie jar here), then call the app's guarded routes.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { FakeBitbucket, loginAs } from 'skymarshal-express/testing';
import { createApp } from './app.js';

const fake = await FakeBitbucket.start();
const server = createServer();
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as { port: number }).port;
const base = `http://127.0.0.1:${port}/ci`;
const { app, close } = await createApp({
  externalUrl: base,
  bitbucketCloud: fake.connectorConfig(),
  mainTeam: { users: ['alice'] },
  redis: null, // in memory: this test needs no Redis
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
  assert.equal((await fetch(`${base}/api/v1/teams/main/pipelines`)).status, 401);
  checks++;
  const bob = await loginAs(base, fake, 'bob').catch((err: unknown) => err);
  assert.ok(bob instanceof Error, 'bob is in no team of this app: his login is refused');
  checks++;
  const admin = await fetch(`${base}/admin`, { headers: alice.bearer });
  assert.deepEqual(await admin.json(), { admin: true });
  checks++;
  console.log(`examples/esm: ${checks} checks passed`);
} finally {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await close();
  await fake.stop();
}
