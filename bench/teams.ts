import type { Identity } from '../lib/connector';
import { createLogger } from '../lib/log';
import { createRedisStore, type Store } from '../lib/store';
import { parseTeamAuth } from '../lib/teams/auth';
import { TeamStore } from '../lib/teams/store';
import { loadFixtures } from '../lib/testing';

/** The bench user: a viewer of `bench` by name and a member of three teams through the workspace `widgets`. */
export const BENCH_USER = 'bob';
export const BENCH_TEAM = 'bench';

/** Bob as Bitbucket describes him (the same identity the callback builds), for timing teamsOf directly. */
export function benchIdentity(): Identity {
  const bob = loadFixtures().users.find((u) => u.key === BENCH_USER);
  if (!bob) throw new Error('fixtures/bitbucket.json has no bob');
  return {
    connector: 'bitbucket-cloud',
    userId: bob.uuid.toLowerCase(),
    accountId: bob.account_id,
    ...(bob.username ? { userName: bob.username } : {}),
    name: bob.display_name,
    groups: ['widgets'],
  };
}

/** A store and team store on one key prefix of the bench Redis, as a node sees them. */
export function teamStoreOf(redisUrl: string, prefix: string): { store: Store; teams: TeamStore } {
  const store = createRedisStore({ url: redisUrl }, prefix, createLogger('error'), 3600);
  return { store, teams: new TeamStore(store.teams) };
}

/** The team configs of a CI server with `count` teams: bob's four, the rest each with its own owners. */
function* teamConfigs(count: number): Generator<[string, unknown]> {
  yield [BENCH_TEAM, { viewer: { users: [BENCH_USER] } }];
  for (let i = 1; i <= 3; i++) yield [`widgets-${i}`, { member: { groups: ['widgets'] } }];
  for (let i = 0; i < count - 4; i++) {
    yield [
      `team-${i}`,
      {
        owner: { users: [`user-${i}`] },
        member: { groups: [`ws-${i % 1000}`] },
        viewer: { users: ['auditor'] },
      },
    ];
  }
}

/** Writes `count` teams through TeamStore.put (the set-team path), `concurrency` writes in flight. */
export async function loadTeams(teams: TeamStore, count: number, concurrency = 128): Promise<void> {
  const configs = teamConfigs(count);
  const lane = async (): Promise<void> => {
    for (let next = configs.next(); !next.done; next = configs.next()) {
      const [name, raw] = next.value;
      await teams.put(name, parseTeamAuth(raw));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}
