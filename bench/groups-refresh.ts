import type { BenchContext, ScenarioReport } from './context';
import { skyLogin } from './login';
import { routeFor } from './spec';
import { fmt } from './stats';
import { loadTeams, teamStoreOf } from './teams';

/** The bound the scenario runs with, and the default it reports for (SKY_GROUPS_MAX_AGE). */
const BOUND_MS = 2_000;
const DEFAULT_BOUND_MS = 15 * 60_000;
const REQUEST_EVERY_MS = 100;

/**
 * Scenario 5: what keeping groups current costs Bitbucket (SPEC §5.3). One active user (alice: two
 * workspaces, includeTeamGroups + getWorkspacePermissions) calls a guarded route every 100 ms on a node
 * whose SKY_GROUPS_MAX_AGE is 2 s; the fake counts the Bitbucket calls made with her tokens. The cost per
 * hour at the default bound follows from the calls per re-read and the re-reads per bound measured here.
 */
export async function groupsRefresh(ctx: BenchContext): Promise<ScenarioReport> {
  const { settings: s, fake } = ctx;
  const prefix = 'bench5:';
  const seed = teamStoreOf(ctx.redisUrl, prefix);
  await seed.store.ready;
  await loadTeams(seed.teams, 10);
  await seed.teams.put('acme-team', { viewer: { users: [], groups: ['bitbucket-cloud:acme'] } });
  await seed.store.close();
  const node = await ctx.node({
    variant: 'sky',
    prefix,
    includeTeamGroups: true,
    getWorkspacePermissions: true,
    groupsMaxAge: `${BOUND_MS / 1000}s`,
  });
  fake.consentAs('alice');
  const { token } = await skyLogin(node.url);
  fake.resetRequests();
  const seconds = s.quick ? 5 : 30;
  const started = Date.now();
  let requests = 0;
  let refused = 0;
  while (Date.now() - started < seconds * 1000) {
    const res = await fetch(`${node.url}${routeFor('acme-team')}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    await res.arrayBuffer();
    requests++;
    if (res.status !== 200) refused++;
    await new Promise((resolve) => setTimeout(resolve, REQUEST_EVERY_MS));
  }
  const elapsedMs = Date.now() - started;
  const calls = fake.callsOf('alice');
  const rereads = fake.callsOf('alice', /^\/2\.0\/user$/);
  const callsPerReread = rereads === 0 ? 0 : calls / rereads;
  // Re-reads per bound: at most one, a little less as a re-read waits for the first request past the bound.
  const perBound = rereads / (elapsedMs / BOUND_MS);
  const perHour = callsPerReread * perBound * (3_600_000 / DEFAULT_BOUND_MS);
  const measured =
    `${calls} calls in ${rereads} re-reads over ${fmt(elapsedMs / 1000, 1)} s at a ${BOUND_MS / 1000} s bound ` +
    `(${fmt(callsPerReread, 1)} calls a re-read, ${fmt(perBound, 2)} re-reads a bound), ${requests} requests, ${refused} refused`;
  return {
    id: 5,
    title: 'Keeping groups current (SKY_GROUPS_MAX_AGE): Bitbucket calls per active user',
    method:
      'One user calls a guarded route every 100 ms for the run on a node with SKY_GROUPS_MAX_AGE=2s; the fake ' +
      'Bitbucket counts the calls made with her tokens. Calls per hour at the default 15m bound = calls per ' +
      're-read × re-reads per bound × 4 bounds an hour. Bitbucket allows about 1,000 requests an hour.',
    results: [
      {
        id: '5a',
        name: 'Bitbucket calls per active user per hour at the default 15m bound',
        measured,
        value: perHour,
        unit: 'calls/h',
        target: { op: '<=', value: 100 },
      },
      {
        id: '5b',
        name: 'guarded requests refused while groups were re-read',
        measured: `${refused} of ${requests}`,
        value: refused,
        unit: 'requests',
        target: { op: '<=', value: 0 },
      },
    ],
    details: `| measure | value |\n|---|---|\n| Bitbucket calls (alice) | ${calls} |\n| re-reads (GET /2.0/user) | ${rereads} |\n| run | ${fmt(elapsedMs / 1000, 1)} s, bound ${BOUND_MS / 1000} s |\n| guarded requests | ${requests} |\n`,
    raw: { calls, rereads, elapsedMs, requests, refused, boundMs: BOUND_MS },
  };
}
