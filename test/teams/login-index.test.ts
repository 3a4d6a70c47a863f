import { Redis } from 'ioredis';
import { createLogger } from '../../lib/log';
import { createRedisStore } from '../../lib/store';
import { Keys } from '../../lib/store/keys';
import { TeamStore } from '../../lib/teams/store';
import { parseTeamAuth } from '../../lib/teams/auth';
import { FakeBitbucket } from '../../lib/testing';
import { loginAs } from '../harness/login';
import { startNode, testRedis, type TestNode } from '../harness/node';

/**
 * SPEC §6.3: login resolves teams through the user/group → teams index, so its Redis cost does not grow
 * with the number of teams. Every command this node sends is counted with MONITOR on every Redis server.
 */
let fake: FakeBitbucket;
let node: TestNode;
let clients: Redis[] = [];
let monitors: Redis[] = [];
let seen: string[][] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  const redis = testRedis();
  const servers = redis.cluster ?? [];
  clients = servers.length > 0 ? servers.map((s) => new Redis(s.port, s.host)) : [new Redis(redis.url ?? '')];
  monitors = await Promise.all(clients.map((c) => c.monitor()));
  for (const monitor of monitors) {
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      // Round trips only: a script's own commands come from 'lua'. The store check every node runs each
      // second (counts, one HGET of main and one HGETALL of the loss marks, lib/health/watch.ts) is not
      // the login's.
      if (source === 'lua' || isStoreCheck(args)) return;
      if (args.some((a) => a.includes(node.prefix))) seen.push(args);
    });
  }
});
afterAll(async () => {
  for (const connection of [...monitors, ...clients]) connection.disconnect();
  await node.close();
  await fake.stop();
});

function isStoreCheck(args: string[]): boolean {
  const command = (args[0] ?? '').toLowerCase();
  if (command === 'zcard' || command === 'hlen') return true;
  if (command === 'hget') return args[2] === 'main';
  return command === 'hgetall' && args[1] === new Keys(node.prefix).losses;
}

/** The Redis commands of one whole login of bob (start, consent, callback), by command name. */
async function commandsOfOneLogin(): Promise<string[]> {
  await new Promise((r) => setTimeout(r, 100)); // let MONITOR deliver what came before
  seen = [];
  await loginAs(node.url, fake, 'bob');
  await new Promise((r) => setTimeout(r, 100));
  return seen.map((args) => (args[0] ?? '').toLowerCase());
}

async function addTeams(count: number, from: number): Promise<void> {
  const store = createRedisStore(testRedis(), node.prefix, createLogger('silent'), 3600);
  const teams = new TeamStore(store.teams);
  try {
    const auth = (i: number) =>
      parseTeamAuth({ owner: { users: [`user-${i}`] }, viewer: { groups: [`ws-${i % 97}`] } });
    for (let i = from; i < from + count; i += 250) {
      await Promise.all(
        Array.from({ length: Math.min(250, from + count - i) }, (_, k) =>
          teams.put(`team-${i + k}`, auth(i + k)),
        ),
      );
    }
  } finally {
    await store.close();
  }
}

test('a login costs the same bounded number of Redis round trips with 10 and with 10,000 teams', async () => {
  await node.putTeam('builders', { member: { users: ['bob'] } });
  await addTeams(10, 0);
  const small = await commandsOfOneLogin();
  await addTeams(9_990, 10);
  const large = await commandsOfOneLogin();

  // Team resolution is one SUNION over the index and one HMGET of the matching configs.
  expect(large.filter((c) => c === 'sunion')).toHaveLength(1);
  expect(large.filter((c) => c === 'hmget')).toHaveLength(1);
  // Nothing reads all teams, and nothing is done per team.
  expect(large).not.toContain('hgetall');
  expect(large).not.toContain('hkeys');
  expect(large).not.toContain('scan');
  expect(large.length).toBe(small.length);
  // The whole login: login state and session (6), team resolution (2), the sealed upstream tokens (1),
  // the refresh family (4) and the user's family and session sets (one script each), and its audit
  // event (XADD and the age trim, sent together in one MULTI).
  expect(large.filter((c) => c === 'xadd')).toHaveLength(1);
  expect(large.length).toBeLessThanOrEqual(15);
}, 60_000);
