import type { BenchContext, Result, ScenarioReport } from './context';
import { clientFor, dexSequential, skyLogin, type ConnectorSwitches } from './login';
import { fmt, median, rotate } from './stats';
import { loadTeams, teamStoreOf } from './teams';

interface Case {
  key: string;
  label: string;
  user: string;
  switches: ConnectorSwitches;
  /** Calls sky's order cannot overlap (each wave waits for the one before): its floor, in D. */
  skyFloor: number;
  /** Calls in dex's order: its floor, in D. */
  dexCalls: number;
}

/**
 * Scenario 2: the login callback while the fake Bitbucket delays every call by D. sky's number is the
 * real callback hop (GET /sky/issuer/callback: exchange, identity, teams, token, session); dex's is the
 * same calls one after another through the same BitbucketClient.
 */
export async function loginLatency(ctx: BenchContext): Promise<ScenarioReport> {
  const { settings: s, fake } = ctx;
  const D = s.delayMs;
  const prefix = 'bench2:';
  const seed = teamStoreOf(ctx.redisUrl, prefix);
  await seed.store.ready;
  await loadTeams(seed.teams, 10);
  await seed.store.close();

  const cases: Case[] = [
    {
      key: 'default',
      label: 'default connector (bob: user, emails, workspaces)',
      user: 'bob',
      switches: { includeTeamGroups: false, getWorkspacePermissions: false },
      skyFloor: 2,
      dexCalls: 4,
    },
    {
      key: 'groups',
      label: 'includeTeamGroups + getWorkspacePermissions (alice: 2 workspaces)',
      user: 'alice',
      switches: { includeTeamGroups: true, getWorkspacePermissions: true },
      skyFloor: 3,
      dexCalls: 8,
    },
  ];
  const results: Result[] = [];
  const rows: string[] = [];
  const raw: Record<string, { sky: number[]; dex: number[] }> = {};
  fake.addFault({ match: 'all', latencyMs: D });
  try {
    for (const c of cases) {
      const node = await ctx.node({ variant: 'sky', prefix, ...c.switches });
      const client = clientFor(fake, c.switches);
      fake.consentAs(c.user);
      const sky: number[] = [];
      const dex: number[] = [];
      const measure = {
        sky: async () => sky.push((await skyLogin(node.url)).callbackMs),
        dex: async () => dex.push(await dexSequential(fake, client, c.switches)),
      };
      await measure.sky(); // warm-up: first connections, JIT
      sky.length = 0;
      for (let round = 0; round < s.rounds; round++) {
        for (const who of rotate(['sky', 'dex'] as const, round)) {
          for (let i = 0; i < s.loginsPerRound; i++) await measure[who]();
        }
      }
      await node.stop();
      raw[c.key] = { sky, dex };
      const informational = c.key !== 'default';
      results.push(
        {
          id: informational ? '2c' : '2a',
          name: `sky login callback, ${c.label}`,
          measured: `median ${fmt(median(sky), 1)} ms, D = ${D} ms`,
          value: median(sky) / D,
          unit: '× D',
          target: informational ? { op: '<=', value: c.skyFloor + 0.5 } : { op: '<=', value: 2.5 },
          ...(informational ? { informational } : {}),
        },
        {
          id: informational ? '2d' : '2b',
          name: `dex-style sequential calls, ${c.label}`,
          measured: `median ${fmt(median(dex), 1)} ms`,
          value: median(dex) / D,
          unit: '× D',
          target: { op: '>=', value: informational ? c.dexCalls : 4 },
          ...(informational ? { informational } : {}),
        },
      );
      rows.push(
        `| ${c.label} | sky callback | ${fmt(median(sky), 1)} | ${fmt(median(sky) / D, 2)} | ${c.skyFloor} | ${fmt(Math.min(...sky), 1)}–${fmt(Math.max(...sky), 1)} |`,
        `| | dex order | ${fmt(median(dex), 1)} | ${fmt(median(dex) / D, 2)} | ${c.dexCalls} | ${fmt(Math.min(...dex), 1)}–${fmt(Math.max(...dex), 1)} |`,
      );
    }
  } finally {
    fake.clearFaults();
  }
  return {
    id: 2,
    title: 'Login latency with a slow Bitbucket',
    method:
      `The fake Bitbucket delays every call by D = ${D} ms (\`addFault({ match: 'all', latencyMs: D })\`). ` +
      `${s.rounds} rounds × ${s.loginsPerRound} logins each way, sky and dex alternating who goes first; one login at a time. ` +
      'sky: the GET of the callback alone, timed by the client (the authorize hop before it is not counted). ' +
      'dex: token exchange, user, emails, workspaces, then per workspace its groups and permission, one after another (lib/bitbucket BitbucketClient).',
    results,
    details: [
      '| connector | order | median ms | × D | calls that cannot overlap (D) | range ms |',
      '|---|---|---:|---:|---:|---|',
      ...rows,
    ].join('\n'),
    raw,
  };
}
