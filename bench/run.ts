import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { FakeBitbucket } from '../lib/testing';
import { redisServerBinary, startRedisServer } from '../test/harness/global-setup';
import { describePinning, pinToLoadCore } from './cores';
import { passes, settingsFor, type BenchContext, type ScenarioReport } from './context';
import { groupsRefresh } from './groups-refresh';
import { loginLatency } from './login-latency';
import { memory } from './memory';
import { buildNodes, startNode, type BenchNode } from './nodes';
import { perRequest } from './per-request';
import { renderChart, renderMarkdown, type Machine } from './report';
import { fmt } from './stats';
import { teamScaling } from './team-scaling';

const BENCH = __dirname;
const SCENARIOS: Record<number, (ctx: BenchContext) => Promise<ScenarioReport>> = {
  1: perRequest,
  2: loginLatency,
  3: teamScaling,
  4: memory,
  5: groupsRefresh,
};

const USAGE = `npm run bench -- [--quick] [--only 1,2,3,4,5] [--rounds N] [--cpu-prof] [--out DIR]
  --quick     tiny durations and team counts: proves the harness works, judges nothing (exit 0)
  --only      run some scenarios (4 reuses the teams of 3 and writes them when 3 did not run)
  --rounds    rounds per scenario (default 5; 1 with --quick)
  --cpu-prof  V8 CPU profiles of every web node, written to a temp dir when each node stops
  --out DIR   where RESULTS.md and chart.svg go (default: bench/ for a full run, a temp dir otherwise)`;

async function machine(redisBinary: string): Promise<Machine> {
  const { stdout } = await promisify(execFile)(redisBinary, ['--version']);
  const autocannon = JSON.parse(
    readFileSync(path.join(BENCH, '..', 'node_modules', 'autocannon', 'package.json'), 'utf8'),
  ) as { version: string };
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: os.totalmem() / 1024 ** 3,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: /v=(\S+)/.exec(stdout)?.[1] ?? stdout.trim(),
    autocannon: autocannon.version,
    pinning: describePinning(),
    loadBefore: os.loadavg(),
    loadAfter: [],
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      rounds: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const started = Date.now();
  const settings = settingsFor(values.quick, values.rounds ? Number(values.rounds) : undefined);
  const only = values.only ? values.only.split(',').map(Number) : [1, 2, 3, 4, 5];
  if (only.some((n) => !SCENARIOS[n]) || !(settings.rounds >= 1)) {
    console.error(USAGE);
    return 2;
  }
  const partial = values.quick || values.only !== undefined || values.rounds !== undefined;
  const outDir = values.out ?? (partial ? mkdtempSync(path.join(os.tmpdir(), 'sky-bench-')) : BENCH);
  const log = (line: string): void => console.log(line);
  const cpuProfDir = values['cpu-prof']
    ? mkdtempSync(path.join(os.tmpdir(), 'sky-bench-profiles-'))
    : undefined;

  const redisBinary = redisServerBinary();
  const info = await machine(redisBinary);
  log(
    `sky bench${values.quick ? ' --quick' : ''}: ${info.cpu}, ${info.cores} cores, node ${info.node}, redis ${info.redis}`,
  );
  log('building the web nodes (tsc, incremental)…');
  await buildNodes(log);
  const redis = await startRedisServer(redisBinary);
  pinToLoadCore(process.pid);
  pinToLoadCore(redis.pid);
  log(describePinning());
  const fake = await FakeBitbucket.start();
  const nodes: BenchNode[] = [];
  const cleanup = async (): Promise<void> => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await fake.stop();
    try {
      process.kill(redis.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    rmSync(redis.dir, { recursive: true, force: true }); // no persistence: nothing in it is worth keeping
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void cleanup().then(() => process.exit(130)));
  }

  const ctx: BenchContext = {
    settings,
    redisUrl: redis.url,
    fake,
    log,
    async node(spec, flags = {}) {
      const node = await startNode(
        {
          ...spec,
          redisUrl: redis.url,
          fake: { url: fake.url, clientId: fake.client.id, clientSecret: fake.client.secret },
        },
        { ...flags, ...(cpuProfDir ? { cpuProfDir } : {}) },
      );
      nodes.push(node);
      return node;
    },
  };
  const reports: ScenarioReport[] = [];
  try {
    for (const n of only) {
      const scenario = SCENARIOS[n] as (typeof SCENARIOS)[number];
      log(`scenario ${n}…`);
      const report = await scenario(ctx);
      reports.push(report);
      for (const r of report.results) {
        log(`  ${r.id} ${r.name}: ${fmt(r.value, 2)} ${r.unit} (${r.measured})`);
      }
      await Promise.allSettled(nodes.splice(0).map((node) => node.stop()));
    }
  } finally {
    await cleanup();
  }
  info.loadAfter = os.loadavg();
  const durationS = (Date.now() - started) / 1000;
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const results = reports.flatMap((r) => r.results);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'chart.svg'), renderChart(results, settings.quick));
  const notes = readFileSync(path.join(BENCH, 'before-after.md'), 'utf8');
  const markdown = renderMarkdown({
    command,
    date: new Date(started),
    machine: info,
    settings,
    scenarios: reports,
    durationS,
    chartFile: 'chart.svg',
    notes,
  });
  writeFileSync(path.join(outDir, 'RESULTS.md'), markdown);
  const rawDir = path.join(BENCH, 'results');
  mkdirSync(rawDir, { recursive: true });
  const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
  const raw = { command, machine: info, settings, reports };
  writeFileSync(
    path.join(rawDir, `${values.quick ? 'quick' : stamp}.json`),
    `${JSON.stringify(raw, null, 2)}\n`,
  );
  log(`\nwrote ${path.join(outDir, 'RESULTS.md')} and chart.svg in ${fmt(durationS, 0)} s`);
  if (cpuProfDir) log(`CPU profiles of the web nodes: ${cpuProfDir}`);
  if (settings.quick) {
    log('--quick: the harness works; numbers are not judged.');
    return 0;
  }
  const missed = results.filter((r) => !r.informational && !passes(r));
  for (const r of missed) log(`MISS ${r.id} ${r.name}: ${fmt(r.value, 2)} ${r.unit}`);
  log(missed.length === 0 ? 'every target met' : `${missed.length} target(s) missed`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
