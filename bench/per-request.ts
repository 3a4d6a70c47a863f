import type { BenchContext, Result, ScenarioReport } from './context';
import { load, type LoadResult } from './load';
import { skyLogin } from './login';
import { PASSPORT_LOGIN_ROUTE, routeFor } from './spec';
import { fmt, median, pairedRatios, rotate } from './stats';
import { BENCH_TEAM, loadTeams, teamStoreOf } from './teams';

interface Target {
  key:
    | 'bare-bearer'
    | 'sky-bearer'
    | 'bare-cookie'
    | 'sky-cookie'
    | 'bare-automation'
    | 'sky-automation'
    | 'passport';
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

/** A viewer automation token of the bench team, made by the admin (alice) through the API. */
async function automationToken(nodeUrl: string, ctx: BenchContext): Promise<string> {
  ctx.fake.consentAs('alice');
  const alice = await skyLogin(nodeUrl);
  ctx.fake.consentAs('bob');
  const res = await fetch(`${nodeUrl}/api/v1/teams/${BENCH_TEAM}/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: `bench-${Date.now()}`, role: 'viewer' }),
  });
  const body = (await res.json()) as { token?: string };
  if (res.status !== 201 || !body.token) throw new Error(`could not make an automation token: ${res.status}`);
  return body.token;
}

/**
 * Scenario 1: the per-request cost of requiresTeamRole('viewer'), by Bearer token, by cookie + CSRF
 * and by an automation token,
 * against the same route without middleware (same request headers), and against express-session +
 * passport + a role lookup. Autocannon from this process, one node per variant.
 *
 * sky against the bare route (1a, 1b) is judged by CPU time per request with both nodes loaded at the
 * same time on the same core: on this shared machine the speed of a core drifts by a third within a
 * minute, so two runs one after the other compare two machines; run together, both see the same one.
 * Their req/s one after the other is reported beside it. Against passport (a Redis round trip per
 * request, whose cost is partly Redis's CPU) the judge is req/s, one after the other.
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
  const automation = { authorization: `Bearer ${await automationToken(skyNode.url, ctx)}` };
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
      key: 'bare-automation',
      label: 'no middleware (GET, an automation token’s headers)',
      url: bare.url + path,
      method: 'GET',
      headers: automation,
      pid: bare.pid,
    },
    {
      key: 'sky-automation',
      label: "requiresTeamRole('viewer'), automation token (GET)",
      url: skyNode.url + path,
      method: 'GET',
      headers: automation,
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

  const target = (key: Target['key']): Target => targets.find((t) => t.key === key) as Target;
  const pairs = [
    [target('bare-bearer'), target('sky-bearer')],
    [target('bare-cookie'), target('sky-cookie')],
    [target('bare-automation'), target('sky-automation')],
  ] as const;

  if (s.warmupSeconds > 0) for (const t of targets) await run(t, s.warmupSeconds);
  const samples = new Map<Target['key'], LoadResult[]>(targets.map((t) => [t.key, []]));
  const together = new Map<Target['key'], LoadResult[]>(targets.map((t) => [t.key, []]));
  for (let round = 0; round < s.rounds; round++) {
    for (const t of rotate(targets, round)) samples.get(t.key)?.push(await run(t, s.loadSeconds));
    for (const pair of pairs) {
      const results = await Promise.all(pair.map((t) => run(t, s.loadSeconds)));
      pair.forEach((t, i) => together.get(t.key)?.push(results[i] as LoadResult));
    }
    const cpuOf = (key: Target['key']): string => fmt(together.get(key)?.at(-1)?.cpuUs ?? NaN);
    ctx.log(
      `  round ${round + 1}/${s.rounds}: ${targets.map((t) => `${t.key} ${fmt(samples.get(t.key)?.at(-1)?.rps ?? NaN)}`).join(', ')} req/s; ` +
        `loaded together: ${pairs.map(([bare, sky]) => `${sky.key} ${cpuOf(sky.key)} vs ${cpuOf(bare.key)}`).join(', ')} CPU µs per request`,
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
  const cpu = (key: Target['key']): number[] => (together.get(key) ?? []).map((r) => r.cpuUs);
  /** bare ÷ sky CPU time per request, both loaded at once (the judge of 1a and 1b). */
  const compareCpu = (id: string, name: string, subject: Target['key'], baseline: Target['key']): Result => ({
    id,
    name,
    measured: `${fmt(median(cpu(subject)))} vs ${fmt(median(cpu(baseline)))} CPU µs per request, loaded together`,
    value: median(pairedRatios(cpu(baseline), cpu(subject))),
    unit: '×',
    target: { op: '>=', value: 0.85 },
  });
  /** The same pair by req/s, one after the other (reported: on this machine it swings with the core's speed). */
  const compareRps = (id: string, name: string, subject: Target['key'], baseline: Target['key']): Result => ({
    ...compare(id, name, subject, baseline, 0.85),
    informational: true,
  });
  const results: Result[] = [
    compareCpu(
      '1a',
      'requiresTeamRole, Bearer ÷ no middleware (CPU per request, bare ÷ sky)',
      'sky-bearer',
      'bare-bearer',
    ),
    compareRps('1a′', 'the same by req/s, one after the other', 'sky-bearer', 'bare-bearer'),
    compareCpu(
      '1b',
      'requiresTeamRole, cookie + CSRF ÷ no middleware (CPU per request, bare ÷ sky)',
      'sky-cookie',
      'bare-cookie',
    ),
    compareRps('1b′', 'the same by req/s, one after the other', 'sky-cookie', 'bare-cookie'),
    compareCpu(
      '1e',
      'requiresTeamRole, automation token ÷ no middleware (CPU per request, bare ÷ sky)',
      'sky-automation',
      'bare-automation',
    ),
    compareRps('1e′', 'the same by req/s, one after the other', 'sky-automation', 'bare-automation'),
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
    const paired = together.get(t.key) ?? [];
    const pairedCpu = paired.length ? fmt(median(paired.map((r) => r.cpuUs))) : '–';
    return `| ${t.label} | ${fmt(median(list.map((r) => r.rps)))} | ${fmt(median(list.map((r) => r.cpuUs)))} | ${pairedCpu} | ${fmt(median(list.map((r) => r.p50)), 1)} | ${fmt(median(list.map((r) => r.p99)), 1)} | ${list.map((r) => fmt(r.rps)).join(', ')} |`;
  });
  return {
    id: 1,
    title: 'Per-request cost of the guards',
    method:
      `autocannon (${s.connections} connections, ${s.loadSeconds} s per measurement) ` +
      `against one node process per variant; ${s.rounds} rounds. Each round measures every variant alone, one after the other ` +
      '(the order rotated each round), then bare and sky together: the Bearer pair, then the cookie pair, both nodes on the same core. ' +
      'Ratio = median of the per-round ratios. ' +
      "CPU µs per request: the node process's user + system time over the run (/proc), per 2xx answer. " +
      `Route ${routeFor(':team')}, team \`${BENCH_TEAM}\` where bob is a viewer.`,
    results,
    details: [
      '| variant | median req/s (alone) | CPU µs per request (alone) | CPU µs per request (loaded together) | p50 ms | p99 ms | every round (req/s, alone) |',
      '|---|---:|---:|---:|---:|---:|---|',
      ...rows,
    ].join('\n'),
    raw: { alone: Object.fromEntries(samples), together: Object.fromEntries(together) },
  };
}
