import type { BenchContext, Result, ScenarioReport } from './context';
import { load, type LoadResult } from './load';
import { skyLogin } from './login';
import { PASSPORT_LOGIN_ROUTE, routeFor } from './spec';
import { fmt, median, pairedRatios, rotate } from './stats';
import { BENCH_TEAM, loadTeams, teamStoreOf } from './teams';

interface Target {
  key: 'bare-bearer' | 'sky-bearer' | 'bare-cookie' | 'sky-cookie' | 'passport';
  label: string;
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  pid: number;
}

/** The passport app's session cookie, from its login route. */
async function passportLogin(nodeUrl: string): Promise<string> {
  const res = await fetch(`${nodeUrl}${PASSPORT_LOGIN_ROUTE}`, { method: 'POST' });
  await res.arrayBuffer();
  const sid = res.headers
    .getSetCookie()
    .map((line) => line.split(';', 1)[0] ?? '')
    .find((pair) => pair.startsWith('connect.sid='));
  if (res.status !== 200 || !sid) throw new Error(`passport login failed: ${res.status}`);
  return sid;
}

/**
 * Scenario 1: the per-request cost of requiresTeamRole('viewer'), by Bearer token and by cookie + CSRF,
 * against the same route without middleware (same request headers), and against express-session +
 * passport + a role lookup. Requests per second, autocannon from this process, one node per variant.
 */
export async function perRequest(ctx: BenchContext): Promise<ScenarioReport> {
  const { settings: s } = ctx;
  const prefix = 'bench1:';
  const seed = teamStoreOf(ctx.redisUrl, prefix);
  await seed.store.ready;
  await loadTeams(seed.teams, 10);
  await seed.store.close();

  const [bare, skyNode, passportNode] = await Promise.all([
    ctx.node({ variant: 'bare', prefix }),
    ctx.node({ variant: 'sky', prefix }),
    ctx.node({ variant: 'passport', prefix }),
  ]);
  ctx.fake.consentAs('bob');
  const bob = await skyLogin(skyNode.url);
  const passportCookie = await passportLogin(passportNode.url);
  const path = routeFor(BENCH_TEAM);
  const bearer = { authorization: `Bearer ${bob.token}` };
  const cookie = { cookie: bob.cookie, 'x-csrf-token': bob.csrf };
  const targets: Target[] = [
    {
      key: 'bare-bearer',
      label: 'no middleware (GET, same headers)',
      url: bare.url + path,
      method: 'GET',
      headers: bearer,
      pid: bare.pid,
    },
    {
      key: 'sky-bearer',
      label: "requiresTeamRole('viewer'), Bearer (GET)",
      url: skyNode.url + path,
      method: 'GET',
      headers: bearer,
      pid: skyNode.pid,
    },
    {
      key: 'bare-cookie',
      label: 'no middleware (POST, same headers)',
      url: bare.url + path,
      method: 'POST',
      headers: cookie,
      pid: bare.pid,
    },
    {
      key: 'sky-cookie',
      label: "requiresTeamRole('viewer'), cookie + X-Csrf-Token (POST)",
      url: skyNode.url + path,
      method: 'POST',
      headers: cookie,
      pid: skyNode.pid,
    },
    {
      key: 'passport',
      label: 'express-session + passport + role lookup (GET)',
      url: passportNode.url + path,
      method: 'GET',
      headers: { cookie: passportCookie },
      pid: passportNode.pid,
    },
  ];
  const run = (t: Target, seconds: number): Promise<LoadResult> =>
    load({
      url: t.url,
      method: t.method,
      headers: t.headers,
      pid: t.pid,
      connections: s.connections,
      seconds,
    });

  if (s.warmupSeconds > 0) for (const t of targets) await run(t, s.warmupSeconds);
  const samples = new Map<Target['key'], LoadResult[]>(targets.map((t) => [t.key, []]));
  for (let round = 0; round < s.rounds; round++) {
    for (const t of rotate(targets, round)) samples.get(t.key)?.push(await run(t, s.loadSeconds));
    ctx.log(
      `  round ${round + 1}/${s.rounds}: ${targets.map((t) => `${t.key} ${fmt(samples.get(t.key)?.at(-1)?.rps ?? NaN)}`).join(', ')} req/s`,
    );
  }
  const rps = (key: Target['key']): number[] => (samples.get(key) ?? []).map((r) => r.rps);
  const compare = (
    id: string,
    name: string,
    subject: Target['key'],
    baseline: Target['key'],
    target: number,
  ): Result => ({
    id,
    name,
    measured: `${fmt(median(rps(subject)))} vs ${fmt(median(rps(baseline)))} req/s`,
    value: median(pairedRatios(rps(subject), rps(baseline))),
    unit: '×',
    target: { op: '>=', value: target },
  });
  const cpu = (key: Target['key']): number[] => (samples.get(key) ?? []).map((r) => r.cpuUs);
  /** The same comparison from the node's CPU time per request: other work on the machine moves it less. */
  const compareCpu = (
    id: string,
    name: string,
    subject: Target['key'],
    baseline: Target['key'],
  ): Result[] => {
    const ratio = median(pairedRatios(cpu(baseline), cpu(subject)));
    if (!Number.isFinite(ratio)) return [];
    return [
      {
        id,
        name,
        measured: `${fmt(median(cpu(subject)))} vs ${fmt(median(cpu(baseline)))} CPU µs per request`,
        value: ratio,
        unit: '×',
        target: { op: '>=', value: 0.85 },
        informational: true,
      },
    ];
  };
  const results: Result[] = [
    compare('1a', 'requiresTeamRole, Bearer ÷ no middleware', 'sky-bearer', 'bare-bearer', 0.85),
    ...compareCpu('1a′', 'the same by CPU time per request (bare ÷ sky)', 'sky-bearer', 'bare-bearer'),
    compare('1b', 'requiresTeamRole, cookie + CSRF ÷ no middleware', 'sky-cookie', 'bare-cookie', 0.85),
    ...compareCpu('1b′', 'the same by CPU time per request (bare ÷ sky)', 'sky-cookie', 'bare-cookie'),
    compare('1c', 'requiresTeamRole, Bearer ÷ express-session + passport', 'sky-bearer', 'passport', 2),
    compare(
      '1d',
      'requiresTeamRole, cookie + CSRF ÷ express-session + passport',
      'sky-cookie',
      'passport',
      2,
    ),
  ];
  const rows = targets.map((t) => {
    const list = samples.get(t.key) ?? [];
    return `| ${t.label} | ${fmt(median(list.map((r) => r.rps)))} | ${fmt(median(list.map((r) => r.cpuUs)))} | ${fmt(median(list.map((r) => r.p50)), 1)} | ${fmt(median(list.map((r) => r.p99)), 1)} | ${list.map((r) => fmt(r.rps)).join(', ')} |`;
  });
  return {
    id: 1,
    title: 'Per-request cost of the guards',
    method:
      `autocannon (${s.connections} connections, ${s.loadSeconds} s per measurement) ` +
      `against one node process per variant; ${s.rounds} rounds, the order rotated each round; ratio = median of the per-round ratios. ` +
      "CPU µs per request: the node process's user + system time over the run (/proc), per 2xx answer. " +
      `Route ${routeFor(':team')}, team \`${BENCH_TEAM}\` where bob is a viewer.`,
    results,
    details: [
      '| variant | median req/s | CPU µs per request | p50 ms | p99 ms | every round (req/s) |',
      '|---|---:|---:|---:|---:|---|',
      ...rows,
    ].join('\n'),
    raw: Object.fromEntries(samples),
  };
}
