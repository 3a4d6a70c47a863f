import { connectRedis } from '../../lib/store';
import { Keys } from '../../lib/store/keys';
import { FakeBitbucket } from '../../lib/testing';
import { loginAs, type LoggedIn } from '../harness/login';
import { startNode, testRedis, type TestNode } from '../harness/node';

/** Issue #13 item 8: concurrent admin writes of one team all succeed, and the login index ends as the config says. */
let fake: FakeBitbucket;
let node: TestNode;
let alice: LoggedIn; // admin
let redis: ReturnType<typeof connectRedis>;
let keys: Keys;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  alice = await loginAs(node.url, fake, 'alice');
  redis = connectRedis(testRedis());
  keys = new Keys(node.prefix);
});
afterAll(async () => {
  await redis.quit();
  await node.close();
  await fake.stop();
});

interface Principals {
  users: string[];
  groups: string[];
}
type Auth = Record<string, Principals>;

/** Config i: its own owners (one a brace-wrapped uuid) and viewer group, plus a group every config names. */
const config = (i: number) => ({
  owner: { users: [`writer-${i}`, `{0000-${i}}`] },
  viewer: { groups: [`ws-${i}`, 'crew'] },
});

const put = (team: string, auth: unknown): Promise<Response> =>
  fetch(`${node.url}/api/v1/teams/${team}`, {
    method: 'PUT',
    headers: { ...alice.bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth }),
  });
const del = (team: string): Promise<Response> =>
  fetch(`${node.url}/api/v1/teams/${team}`, { method: 'DELETE', headers: alice.bearer });

/** The config the API holds now (null: no such team). */
async function current(team: string): Promise<Auth | null> {
  const res = await fetch(`${node.url}/api/v1/teams/${team}`, { headers: alice.bearer });
  if (res.status === 404) return null;
  expect(res.status).toBe(200);
  return ((await res.json()) as { auth: Auth }).auth;
}

/** Every principal of the lists, once. */
function union(lists: Principals[]): Principals {
  return {
    users: [...new Set(lists.flatMap((p) => p.users))],
    groups: [...new Set(lists.flatMap((p) => p.groups))],
  };
}
const entries = (auth: Auth): Principals => union(Object.values(auth));

/** The principals (of those given) whose index set holds the team. */
async function indexed(team: string, { users, groups }: Principals): Promise<Principals> {
  const holds = async (key: string) => (await redis.sismember(key, team)) === 1;
  const [u, g] = await Promise.all([
    Promise.all(users.map((p) => holds(keys.userIndex(p)))),
    Promise.all(groups.map((p) => holds(keys.groupIndex(p)))),
  ]);
  return { users: users.filter((_, i) => u[i]), groups: groups.filter((_, i) => g[i]) };
}

/** Of every principal any sent config named, exactly those of `final` (none when null) index the team. */
async function expectIndexOf(team: string, sent: Auth[], final: Auth | null): Promise<void> {
  const expected = final ? entries(final) : { users: [], groups: [] };
  const found = await indexed(team, union(sent.map(entries)));
  expect(new Set(found.users)).toEqual(new Set(expected.users));
  expect(new Set(found.groups)).toEqual(new Set(expected.groups));
  const stored = await redis.hget(keys.teamPrincipals, team);
  expect(stored === null ? null : (JSON.parse(stored) as Principals)).toEqual(final ? expected : null);
}

/** The normalised config a PUT's response echoes. */
const echoed = async (res: Response): Promise<Auth> => ((await res.json()) as { auth: Auth }).auth;

test('40 concurrent admin PUTs of one team: all succeed, one of them wins, the index agrees', async () => {
  const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => put('contended', config(i))));
  expect(responses.map((r) => r.status).filter((s) => s !== 200 && s !== 201)).toEqual([]);
  expect(responses.filter((r) => r.status === 201)).toHaveLength(1);
  const sent = await Promise.all(responses.map(echoed));
  expect(new Set(sent.map((auth) => JSON.stringify(auth))).size).toBe(40);

  const final = await current('contended');
  expect(sent).toContainEqual(final);
  await expectIndexOf('contended', sent, final);
});

test('20 concurrent PUTs and DELETEs of one team, round after round, end consistent', async () => {
  const first = await put('churn', config(0));
  expect(first.status).toBe(201);
  const sent = [await echoed(first)];
  for (let round = 0; round < 5; round++) {
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0 ? put('churn', config(100 + round * 20 + i)) : del('churn'),
      ),
    );
    const unexpected = responses.filter(
      (r, i) => !(i % 2 === 0 ? [200, 201] : [204, 404]).includes(r.status),
    );
    expect(unexpected.map((r) => r.status)).toEqual([]);
    const puts = responses.filter((_, i) => i % 2 === 0);
    sent.push(...(await Promise.all(puts.map(echoed))));

    const final = await current('churn');
    if (final) expect(sent.slice(-10)).toContainEqual(final);
    await expectIndexOf('churn', sent, final);
  }
});
