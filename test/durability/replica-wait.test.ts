import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { FakeBitbucket } from '../../lib/testing';
import { freePort, redisServerBinary, waitForPort } from '../harness/global-setup';
import { loginAs } from '../harness/login';
import { startNode, type TestNode } from '../harness/node';
import { PrivateRedis } from '../harness/redis-server';

/**
 * Acknowledged means durable where replicas exist (issue #15, SPEC §8): when the master has a replica,
 * a revocation, a rotation or a team write is answered only once a replica confirmed it (WAIT); one
 * that no replica confirmed within SKY_REDIS_REPLICA_WAIT answers 503 and is not reported as done.
 * The replica is stopped with SIGSTOP: the master still counts it, and it confirms nothing.
 */
jest.setTimeout(60_000);

let fake: FakeBitbucket;
let master: PrivateRedis;
let replica: ChildProcess;
let replicaDir: string;
const nodes: TestNode[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  master = await PrivateRedis.start();
  const port = await freePort();
  replicaDir = mkdtempSync(path.join(os.tmpdir(), 'sky-replica-'));
  replica = spawn(
    redisServerBinary(),
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      replicaDir,
      '--appendonly',
      'yes',
      '--save',
      '',
      '--replicaof',
      '127.0.0.1',
      String(master.port),
    ],
    { stdio: 'ignore' },
  );
  await waitForPort(port);
  const deadline = Date.now() + 10_000;
  while (!/slave0:.*state=online/.test(String(await master.command(['INFO', 'replication'])))) {
    if (Date.now() > deadline) throw new Error('the replica did not connect');
    await new Promise((r) => setTimeout(r, 50));
  }
});
afterAll(async () => {
  for (const node of nodes) await node.close();
  replica?.kill('SIGCONT');
  replica?.kill('SIGKILL');
  rmSync(replicaDir, { recursive: true, force: true });
  await master?.stop();
  await fake?.stop();
});

async function node(replicaWait: string): Promise<TestNode> {
  const started = await startNode({ fake, options: { redis: { url: master.url }, replicaWait } });
  nodes.push(started);
  return started;
}

const putTeam = (n: TestNode, bearer: object, team: string) =>
  fetch(`${n.url}/api/v1/teams/${team}`, {
    method: 'PUT',
    headers: { ...bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { owner: { users: ['alice'] } } }),
  });

test('with a live replica writes are confirmed; with a stopped one they answer 503 and say why', async () => {
  const n = await node('1s');
  const alice = await loginAs(n.url, fake, 'alice');
  expect((await putTeam(n, alice.bearer, 'confirmed')).status).toBe(201);
  const spare = await loginAs(n.url, fake, 'alice');

  replica.kill('SIGSTOP');
  try {
    const started = Date.now();
    const unconfirmed = await putTeam(n, alice.bearer, 'unconfirmed');
    expect(unconfirmed.status).toBe(503);
    expect(((await unconfirmed.json()) as { message: string }).message).toMatch(
      /no Redis replica confirmed the write \(write a team\) within 1000 ms: it is not reported as done/,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    const logout = await fetch(`${n.url}/sky/logout`, { method: 'POST', headers: spare.bearer });
    expect(logout.status).toBe(503);
    // Not acknowledged, yet never a grant: the node that took the logout refuses the token already.
    expect((await fetch(`${n.url}/api/v1/user`, { headers: spare.bearer })).status).toBe(401);
  } finally {
    replica.kill('SIGCONT');
  }
  expect((await putTeam(n, alice.bearer, 'after')).status).toBe(201);
  const replicaClient = new Redis(Number(replica.spawnargs[2]), '127.0.0.1');
  try {
    const deadline = Date.now() + 5_000;
    while (!(await replicaClient.hexists(`${n.prefix}{teams}:configs`, 'after'))) {
      if (Date.now() > deadline) throw new Error('the confirmed write is not on the replica');
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    replicaClient.disconnect();
  }
});

test('SKY_REDIS_REPLICA_WAIT=off: writes do not wait for the replica', async () => {
  const n = await node('off');
  const alice = await loginAs(n.url, fake, 'alice');
  replica.kill('SIGSTOP');
  try {
    expect((await putTeam(n, alice.bearer, 'unwaited')).status).toBe(201);
  } finally {
    replica.kill('SIGCONT');
  }
});
