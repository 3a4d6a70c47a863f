import { passes, type Result, type ScenarioReport, type Settings } from './context';
import { fmt } from './stats';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  node: string;
  redis: string;
  autocannon: string;
  /** How the load generator and the web nodes share the cores. */
  pinning: string;
  loadBefore: number[];
  loadAfter: number[];
}

const verdict = (r: Result, quick: boolean): string => {
  if (quick) return 'not judged (--quick)';
  if (r.informational) return passes(r) ? 'info (met)' : 'info (not met)';
  return passes(r) ? '**PASS**' : '**MISS**';
};

const digits = (r: Result): number => (r.unit === 'MB' ? 0 : 2);
const targetText = (r: Result): string =>
  `${r.target.op === '>=' ? '≥' : '≤'} ${fmt(r.target.value, digits(r))} ${r.unit}`;

/** The markdown of RESULTS.md. */
export function renderMarkdown(options: {
  command: string;
  date: Date;
  machine: Machine;
  settings: Settings;
  scenarios: ScenarioReport[];
  durationS: number;
  chartFile: string;
  notes: string;
}): string {
  const { machine: m, settings: s, scenarios } = options;
  const all = scenarios.flatMap((x) => x.results);
  const load = (l: number[]): string => l.map((v) => v.toFixed(2)).join(' / ');
  return [
    '# sky benchmarks',
    '',
    `Produced by \`${options.command}\` on ${options.date.toISOString().slice(0, 16).replace('T', ' ')} UTC ` +
      `in ${fmt(options.durationS / 60, 1)} min. Do not edit by hand: rerun the command (the profiling notes at the end come from bench/before-after.md).`,
    '',
    '## Reproduce',
    '',
    '```sh',
    'npm ci',
    'npm run bench                 # every scenario, ~7 min; writes bench/RESULTS.md and bench/chart.svg',
    'npm run bench -- --quick      # tiny sizes in seconds: proves the harness, judges nothing (CI)',
    'npm run bench -- --only 1,3   # some scenarios; --rounds N; --cpu-prof (V8 profiles of the web nodes)',
    '```',
    '',
    'Needs `redis-server` on PATH: the bench starts its own on a free port (never a shared one) and the fake Bitbucket in-process. ' +
      'Web nodes run as separate processes (the TypeScript compiled to node_modules/.cache/sky-bench, then plain `node`, ' +
      'each on its own core when taskset is there); autocannon and the login clients run in the bench process. ' +
      'Raw numbers: bench/results/*.json (not committed).',
    '',
    '## Machine',
    '',
    '| | |',
    '|---|---|',
    `| CPU | ${m.cpu}, ${m.cores} cores (shared with other work: this machine is noisy) |`,
    `| memory | ${fmt(m.memoryGb, 1)} GB |`,
    `| OS | ${m.os} |`,
    `| Node.js | ${m.node} |`,
    `| Redis | ${m.redis} |`,
    `| autocannon | ${m.autocannon} |`,
    `| CPU pinning | ${m.pinning} |`,
    `| load average (1/5/15 min) | before ${load(m.loadBefore)}, after ${load(m.loadAfter)} |`,
    `| rounds | ${s.rounds}${s.quick ? ' (--quick)' : ''} |`,
    '',
    '## Summary',
    '',
    '| # | what | measured | value | target | result |',
    '|---|---|---|---:|---|---|',
    ...all.map(
      (r) =>
        `| ${r.id} | ${r.name} | ${r.measured} | ${fmt(r.value, digits(r))} ${r.unit} | ${targetText(r)} | ${verdict(r, s.quick)} |`,
    ),
    '',
    `![every result against its target](${options.chartFile})`,
    '',
    ...scenarios.flatMap((x) => [`## ${x.id}. ${x.title}`, '', x.method, '', x.details, '']),
    options.notes.trim(),
    '',
  ].join('\n');
}

const escape = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * A bullet chart, one row per result: the bar is the measured value, the black tick the target, each
 * row on its own scale (ratios, multiples of D and MB do not share an axis). Green met, red missed.
 */
export function renderChart(results: Result[], quick: boolean): string {
  const width = 960;
  const labelWidth = 470;
  const barWidth = width - labelWidth - 150;
  const rowHeight = 30;
  const top = 40;
  const height = top + results.length * rowHeight + 20;
  const rows = results.map((r, i) => {
    const y = top + i * rowHeight;
    const scale = Math.max(r.value, r.target.value) * 1.15 || 1;
    const w = Math.max(1, (r.value / scale) * barWidth);
    const t = (r.target.value / scale) * barWidth;
    const color = quick || r.informational ? '#9aa5b1' : passes(r) ? '#2f9e44' : '#e03131';
    const label = `${r.id}  ${r.name}`;
    const shown = label.length > 68 ? `${label.slice(0, 67)}…` : label;
    return [
      `<text x="8" y="${y + 19}" font-size="12">${escape(shown)}</text>`,
      `<rect x="${labelWidth}" y="${y + 6}" width="${barWidth}" height="18" fill="#f1f3f5"/>`,
      `<rect x="${labelWidth}" y="${y + 6}" width="${w.toFixed(1)}" height="18" fill="${color}"/>`,
      `<line x1="${(labelWidth + t).toFixed(1)}" x2="${(labelWidth + t).toFixed(1)}" y1="${y + 2}" y2="${y + 28}" stroke="#000" stroke-width="2"/>`,
      `<text x="${labelWidth + barWidth + 8}" y="${y + 19}" font-size="12">${escape(`${fmt(r.value, digits(r))} ${r.unit} (${targetText(r)})`)}</text>`,
    ].join('\n  ');
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `  <rect width="${width}" height="${height}" fill="#fff"/>`,
    `  <text x="8" y="22" font-size="15" font-weight="bold">sky benchmarks: measured (bar) against target (tick)${quick ? ' — --quick, not judged' : ''}</text>`,
    `  ${rows.join('\n  ')}`,
    '</svg>',
    '',
  ].join('\n');
}
