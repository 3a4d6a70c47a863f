import type { BenchContext, Result, ScenarioReport } from './context';
import { load } from './load';
import type { BenchNode } from './nodes';
import { skyLogin } from './login';
import { routeFor } from './spec';
import { fmt, median, rotate, timed } from './stats';
import { BENCH_TEAM, benchIdentity, loadTeams, teamStoreOf } from './teams';

/** The key prefix that holds `count` teams; the memory scenario reuses the largest. */
export const scalingPrefix = (count: number): string => `bench3-${count}:`;

interface Size {
  count: number;
  node: BenchNode;
  token: string;
  teamsOfUs: number[];
  callbackMs: number[];
  guardRps: number[];
  guardCpuUs: number[];
  loadMs: number;
}

/**
 * Scenario 3: login resolution and guard cost with few and many teams. Each size has its own key prefix
 * in the same Redis and its own node, so the sizes are measured side by side, round after round.
 */
export async function teamScaling(ctx: BenchContext): Promise<ScenarioReport> {
  const { settings: s } = ctx;
  const identity = benchIdentity();
  const sizes: Size[] = [];
  for (const count of s.teamCounts) {
    const seed = teamStoreOf(ctx.redisUrl, scalingPrefix(count));
    await seed.store.ready;
    const { ms: loadMs } = await timed(() => loadTeams(seed.teams, count));
    await seed.store.close();
    ctx.log(`  ${fmt(count)} teams written through TeamStore.put in ${fmt(loadMs / 1000, 1)} s`);
    const node = await ctx.node({ variant: 'sky', prefix: scalingPrefix(count) });
    ctx.fake.consentAs('bob');
    const { token } = await skyLogin(node.url);
    sizes.push({ count, node, token, teamsOfUs: [], callbackMs: [], guardRps: [], guardCpuUs: [], loadMs });
  }
  // One reader per size, as a node's: TeamStore.teamsOf is what the callback runs to resolve teams.
  const readers = sizes.map((size) => teamStoreOf(ctx.redisUrl, scalingPrefix(size.count)));
  await Promise.all(readers.map((r) => r.store.ready));
  const guard = (size: Size, seconds: number) =>
    load({
      url: size.node.url + routeFor(BENCH_TEAM),
      method: 'GET',
      headers: { authorization: `Bearer ${size.token}` },
      pid: size.node.pid,
      connections: s.connections,
      seconds,
    });
  if (s.warmupSeconds > 0) for (const size of sizes) await guard(size, s.warmupSeconds);
  try {
    for (let round = 0; round < s.rounds; round++) {
      for (const i of rotate(
        sizes.map((_, k) => k),
        round,
      )) {
        const size = sizes[i] as Size;
        const reader = readers[i] as (typeof readers)[number];
        const calls: number[] = [];
        for (let c = 0; c < s.teamsOfCalls; c++) {
          const { ms, value } = await timed(() => reader.teams.teamsOf(identity));
          if (Object.keys(value).length !== 4)
            throw new Error(`bob resolved ${Object.keys(value).length} teams, not 4`);
          calls.push(ms * 1000);
        }
        size.teamsOfUs.push(median(calls));
        const logins: number[] = [];
        for (let c = 0; c < s.loginsPerRound; c++) logins.push((await skyLogin(size.node.url)).callbackMs);
        size.callbackMs.push(median(logins));
        const run = await guard(size, s.loadSeconds);
        size.guardRps.push(run.rps);
        size.guardCpuUs.push(run.cpuUs);
      }
      ctx.log(
        `  round ${round + 1}/${s.rounds}: ` +
          sizes
            .map(
              (z) =>
                `${fmt(z.count)}: teamsOf ${fmt(z.teamsOfUs.at(-1) ?? NaN)} µs, callback ${fmt(z.callbackMs.at(-1) ?? NaN, 1)} ms, guard ${fmt(z.guardRps.at(-1) ?? NaN)} req/s`,
            )
            .join('; '),
      );
    }
  } finally {
    await Promise.all(readers.map((r) => r.store.close()));
    await Promise.all(sizes.map((z) => z.node.stop()));
  }
  const small = sizes[0] as Size;
  const large = sizes.at(-1) as Size;
  /** Large ÷ small per round (invert: small ÷ large, for throughput), then the median. */
  const ratioOf = (pick: (z: Size) => number[], invert = false): number =>
    median(
      pick(large).map((v, i) => {
        const base = pick(small)[i] as number;
        return invert ? base / v : v / base;
      }),
    );
  const label = (n: number): string => fmt(n);
  const results: Result[] = [
    {
      id: '3a',
      name: `login resolution (TeamStore.teamsOf), ${label(large.count)} ÷ ${label(small.count)} teams`,
      measured: `${fmt(median(large.teamsOfUs))} vs ${fmt(median(small.teamsOfUs))} µs`,
      value: ratioOf((z) => z.teamsOfUs),
      unit: '×',
      target: { op: '<=', value: 1.3 },
    },
    {
      id: '3b',
      name: `login callback end to end, ${label(large.count)} ÷ ${label(small.count)} teams`,
      measured: `${fmt(median(large.callbackMs), 1)} vs ${fmt(median(small.callbackMs), 1)} ms`,
      value: ratioOf((z) => z.callbackMs),
      unit: '×',
      target: { op: '<=', value: 1.3 },
    },
    {
      id: '3c',
      name: `guard cost per request (1 / req/s), ${label(large.count)} ÷ ${label(small.count)} teams`,
      measured: `${fmt(median(large.guardRps))} vs ${fmt(median(small.guardRps))} req/s`,
      value: ratioOf((z) => z.guardRps, true),
      unit: '×',
      target: { op: '<=', value: 1.3 },
    },
  ];
  return {
    id: 3,
    title: 'Team-count scaling',
    method:
      `${s.teamCounts.map(label).join(' / ')} teams written through TeamStore.put (the set-team path, 128 writes in flight), ` +
      'each size under its own key prefix with its own node. Bob holds 4 of them (one by name, three through his workspace); ' +
      'every other team has its own owner, a workspace group shared by 1 in 1,000 teams, and one auditor named by all. ' +
      `Per round and size: ${s.teamsOfCalls} sequential TeamStore.teamsOf calls (median), ${s.loginsPerRound} logins (median callback), ` +
      `one autocannon run on the guarded route. ${s.rounds} rounds, order rotated; ratio = median of the per-round ratios.`,
    results,
    details: [
      '| teams | written in | teamsOf µs | callback ms | guard req/s | guard CPU µs per request |',
      '|---:|---:|---:|---:|---:|---:|',
      ...sizes.map(
        (z) =>
          `| ${label(z.count)} | ${fmt(z.loadMs / 1000, 1)} s | ${fmt(median(z.teamsOfUs))} | ${fmt(median(z.callbackMs), 1)} | ${fmt(median(z.guardRps))} | ${fmt(median(z.guardCpuUs))} |`,
      ),
    ].join('\n'),
    raw: sizes.map(({ node: _node, token: _token, ...rest }) => rest),
  };
}
