import { Redis } from 'ioredis';
import type { BenchContext, Result, ScenarioReport } from './context';
import { loadEach } from './load';
import { skyLogin } from './login';
import { MEMORY_ROUTE, routeFor } from './spec';
import { fmt, timed } from './stats';
import { BENCH_TEAM, loadTeams, teamStoreOf } from './teams';
import { scalingPrefix } from './team-scaling';

const MB = 1024 * 1024;

interface Sample {
  stage: string;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  /** Heap still used after a forced full GC: what the node holds. */
  heapAfterGc: number;
}

type Usage = NodeJS.MemoryUsage & { spaces: Record<string, number> };

async function memoryOf(nodeUrl: string, gc: boolean): Promise<Usage> {
  const res = await fetch(`${nodeUrl}${MEMORY_ROUTE}${gc ? '?gc=1' : ''}`);
  return (await res.json()) as Usage;
}

/** Runs `work` for 0 … count-1 with at most `limit` at once. */
async function pool(count: number, limit: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await work(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, lane));
}

/**
 * Scenario 4: the RSS of a fresh node on the Redis of the largest team count after many logins (each a
 * session in Redis and a token), every token used once, and — the worst case — every team's config in
 * the node's cache.
 */
export async function memory(ctx: BenchContext): Promise<ScenarioReport> {
  const { settings: s } = ctx;
  const teamCount = s.teamCounts.at(-1) ?? 0;
  // Scenario 3 wrote them; with --only 4 nobody did.
  const seed = teamStoreOf(ctx.redisUrl, scalingPrefix(teamCount));
  await seed.store.ready;
  if ((await seed.teams.get(`team-${teamCount - 5}`)) === null) await loadTeams(seed.teams, teamCount);
  await seed.store.close();
  const node = await ctx.node({ variant: 'sky', prefix: scalingPrefix(teamCount) }, { exposeGc: true });
  const samples: Sample[] = [];
  const sample = async (stage: string, usage?: Usage): Promise<Sample> => {
    const raw = usage ?? (await memoryOf(node.url, false));
    const collected = await memoryOf(node.url, true);
    const x = {
      stage,
      rss: raw.rss,
      heapTotal: raw.heapTotal,
      heapUsed: raw.heapUsed,
      heapAfterGc: collected.heapUsed,
    };
    samples.push(x);
    ctx.log(
      `  ${stage}: RSS ${fmt(x.rss / MB)} MB, heap ${fmt(x.heapUsed / MB)} of ${fmt(x.heapTotal / MB)} MB (${fmt(x.heapAfterGc / MB)} MB after GC)`,
    );
    return x;
  };
  /**
   * V8 keeps the heap it grew during a burst until its memory reducer runs, some 20-30 s after the
   * allocation rate drops: RSS is read once it has settled (or after `settleMs`), as a node that idles.
   */
  const settle = async (stage: string): Promise<Sample> => {
    const started = Date.now();
    const rss: number[] = [];
    for (;;) {
      await new Promise((r) => setTimeout(r, 2_000));
      const last = await memoryOf(node.url, false);
      rss.push(last.rss);
      const recent = rss.slice(-4);
      const steady = recent.length === 4 && Math.max(...recent) - Math.min(...recent) < 0.02 * last.rss;
      const waited = Date.now() - started;
      if (waited >= s.settleMs || (steady && waited >= s.settleMs / 2)) {
        return sample(`${stage}, ${fmt(waited / 1000)} s later`, last);
      }
    }
  };
  let settledSessions: Sample;
  let settledTeams: Sample;
  try {
    await sample('started');
    ctx.fake.consentAs('bob');
    const tokens: string[] = new Array<string>(s.memorySessions);
    const { ms: loginMs } = await timed(() =>
      pool(s.memorySessions, s.loginConcurrency, async (i) => {
        tokens[i] = (await skyLogin(node.url)).token;
        if (i % 1000 === 999) ctx.fake.resetRequests(); // the fake records requests: keep its memory flat
      }),
    );
    ctx.log(`  ${fmt(s.memorySessions)} logins in ${fmt(loginMs / 1000, 1)} s`);
    await sample(`right after ${fmt(s.memorySessions)} logins (${s.loginConcurrency} at once)`);
    await loadEach(
      node.url,
      tokens.length,
      (i) => ({ path: routeFor(BENCH_TEAM), headers: { authorization: `Bearer ${tokens[i]}` } }),
      s.connections,
    );
    await sample(`right after each of the ${fmt(s.memorySessions)} tokens was used once`);
    settledSessions = await settle('settled (idle)');
    ctx.fake.consentAs('alice');
    const admin = await skyLogin(node.url);
    const names = [BENCH_TEAM, 'widgets-1', 'widgets-2', 'widgets-3'];
    await loadEach(
      node.url,
      teamCount,
      (i) => ({
        path: routeFor(i < names.length ? (names[i] as string) : `team-${i - names.length}`),
        headers: { authorization: `Bearer ${admin.token}` },
      }),
      s.connections,
    );
    await sample(`right after an admin visited every one of the ${fmt(teamCount)} teams`);
    settledTeams = await settle('settled (idle)');
  } finally {
    await node.stop();
  }
  const redis = new Redis(ctx.redisUrl);
  const info = await redis.info('memory');
  const keys = await redis.dbsize();
  await redis.quit();
  const redisUsed = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
  const peak = Math.max(...samples.map((x) => x.rss));
  const results: Result[] = [
    {
      id: '4a',
      name: `node RSS: ${fmt(teamCount)} teams in Redis, ${fmt(s.memorySessions)} sessions, every token used`,
      measured: `${fmt(settledSessions.rss / MB)} MB settled, heap ${fmt(settledSessions.heapAfterGc / MB)} MB after GC`,
      value: settledSessions.rss / MB,
      unit: 'MB',
      target: { op: '<=', value: 150 },
    },
    {
      id: '4b',
      name: `node RSS, worst case: also every team's config asked for once`,
      measured: `${fmt(settledTeams.rss / MB)} MB settled, heap ${fmt(settledTeams.heapAfterGc / MB)} MB after GC`,
      value: settledTeams.rss / MB,
      unit: 'MB',
      target: { op: '<=', value: 150 },
    },
    {
      id: '4c',
      name: 'node RSS at its peak, during the login burst (V8 headroom)',
      measured: `${fmt(peak / MB)} MB`,
      value: peak / MB,
      unit: 'MB',
      target: { op: '<=', value: 150 },
      informational: true,
    },
  ];
  return {
    id: 4,
    title: 'Memory',
    method:
      `A fresh node (compiled JS on plain node, --expose-gc) on the Redis of scenario 3's ${fmt(teamCount)} teams; ` +
      `${fmt(s.memorySessions)} real logins (${s.loginConcurrency} at once), each a session in Redis; every token then used ` +
      `once on the guarded route (the verifier cache fills); then an admin visits every team once (every config in the node's cache). ` +
      'RSS as the OS reports it (process.memoryUsage): right after each step, and settled, once V8 has given back the heap ' +
      'it grew for the burst (it does so when the node idles, ~30 s later). The judged numbers are the settled ones; the peak is shown.',
    results,
    details: [
      '| stage | RSS MB | V8 heap committed MB | heap used MB | heap used after GC MB |',
      '|---|---:|---:|---:|---:|',
      ...samples.map(
        (x) =>
          `| ${x.stage} | ${fmt(x.rss / MB)} | ${fmt(x.heapTotal / MB)} | ${fmt(x.heapUsed / MB)} | ${fmt(x.heapAfterGc / MB)} |`,
      ),
      '',
      `Redis after all scenarios: ${fmt(redisUsed / MB)} MB used, ${fmt(keys)} keys.`,
    ].join('\n'),
    raw: { samples, redisUsed, keys },
  };
}
