/**
 * Go's `time.ParseDuration`, as Concourse and dex read their durations: a possibly signed sequence of
 * decimal numbers, each with an optional fraction and a unit (`300ms`, `-1.5h`, `2h45m`); `0` alone is
 * valid. The result is Go's int64 nanoseconds, held as a bigint so overflow is Go's, not a float's.
 */
export type GoDuration = { ns: bigint } | { problem: DurationProblem };

/** Why a text is not a Go duration: Go's own errors (empty, missing unit, unknown unit, overflow). */
export type DurationProblem =
  | { kind: 'empty' }
  | { kind: 'no_number'; at: string }
  | { kind: 'missing_unit'; after: string }
  | { kind: 'unknown_unit'; unit: string }
  | { kind: 'overflow' };

// Go's unitMap; both micro signs, U+00B5 and U+03BC, as Go accepts them.
const UNITS = new Map<string, bigint>([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n],
  ['\u03bcs', 1_000n],
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);
const LIMIT = 1n << 63n;
const NS_PER_MS = 1_000_000n;

/** Go's leadingFraction: digits past the point stop adding precision once they would overflow int64. */
function leadingFraction(digits: string): { f: bigint; scale: number } {
  let f = 0n;
  let scale = 1;
  for (const digit of digits) {
    const next = f * 10n + BigInt(digit);
    if (f > (LIMIT - 1n) / 10n || next > LIMIT) break;
    f = next;
    scale *= 10;
  }
  return { f, scale };
}

export function parseGoDuration(text: string): GoDuration {
  let rest = text;
  let negative = false;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    negative = rest.startsWith('-');
    rest = rest.slice(1);
  }
  if (rest === '0') return { ns: 0n };
  if (text === '') return { problem: { kind: 'empty' } };
  if (rest === '') return { problem: { kind: 'no_number', at: '' } };
  let total = 0n;
  while (rest !== '') {
    const number = /^(\d*)(?:\.(\d*))?/.exec(rest) as RegExpExecArray;
    const [consumed, whole = '', fraction = ''] = number;
    if (whole === '' && fraction === '') return { problem: { kind: 'no_number', at: rest } };
    // As Go's leadingInt: digits past int64 are an overflow, whatever follows them.
    const digits = whole.replace(/^0+/, '');
    let ns = digits.length > 19 ? LIMIT + 1n : BigInt(`0${digits}`);
    if (ns > LIMIT) return { problem: { kind: 'overflow' } };
    rest = rest.slice(consumed.length);
    const unit = (/^[^.\d]*/.exec(rest) as RegExpExecArray)[0];
    if (unit === '') return { problem: { kind: 'missing_unit', after: consumed } };
    rest = rest.slice(unit.length);
    const scale = UNITS.get(unit);
    if (scale === undefined) return { problem: { kind: 'unknown_unit', unit } };
    if (ns > LIMIT / scale) return { problem: { kind: 'overflow' } };
    ns *= scale;
    const { f, scale: divisor } = leadingFraction(fraction);
    // As Go: the fraction goes through float64, nanosecond-exact up to an hour's worth.
    if (f > 0n) ns += BigInt(Math.trunc(Number(f) * (Number(scale) / divisor)));
    total += ns;
    if (ns > LIMIT || total > LIMIT) return { problem: { kind: 'overflow' } };
  }
  if (negative) return { ns: -total };
  if (total > LIMIT - 1n) return { problem: { kind: 'overflow' } };
  return { ns: total };
}

/** What one duration setting accepts; the README's configuration section lists them. */
export interface DurationRule {
  /** The longest value accepted. */
  maxMs: number;
  /** The shortest value accepted; without it, anything more than 0. */
  minMs?: number;
  /** `off` and any zero duration mean "never" and read as 0 (SKY_REDIS_REPLICA_WAIT). */
  off?: boolean;
}

const GRAMMAR =
  "Go's duration syntax: decimal numbers, each with a unit ns, us, µs, ms, s, m or h, as in 1.5h, 2h45m, 500ms";

/** A value as an error message shows it: at most 40 characters, control characters escaped. */
function shown(value: string): string {
  const chars = [...value.slice(0, 82)]; // 41 code points fit in 82 UTF-16 units
  const cut = chars.length > 40 ? `${chars.slice(0, 40).join('')}…` : value;
  return cut.replace(/\p{Cc}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function why(problem: DurationProblem): string {
  switch (problem.kind) {
    case 'empty':
      return 'it is empty';
    case 'no_number':
      return problem.at === '' ? 'a number is missing' : `expected a number at '${shown(problem.at)}'`;
    case 'missing_unit':
      return `missing unit after ${shown(problem.after)}`;
    case 'unknown_unit':
      return `unknown unit '${shown(problem.unit)}'`;
    case 'overflow':
      return "longer than Go's longest duration (2562047h47m16.854775807s)";
  }
}

/** A bound as an operator writes it: 720h, 10m, 1s, 500ms. */
function written(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function range(rule: DurationRule): string {
  const low = rule.minMs === undefined ? 'more than 0' : `at least ${written(rule.minMs)}`;
  return `${low} and at most ${written(rule.maxMs)}${rule.off ? ', or off (0)' : ''}`;
}

/**
 * One duration setting in milliseconds. Text is Go's grammar (surrounding spaces ignored, as for every
 * setting) and rounds up to a whole millisecond, so a positive value never becomes 0; a number given in
 * code is milliseconds, as it always was. The problem quotes the value (its source is named by the caller).
 */
export function durationMs(value: string | number, rule: DurationRule): { ms: number } | { problem: string } {
  const outOfRange = (what: string) => ({ problem: `duration must be ${range(rule)}, not ${what}` });
  if (typeof value === 'number') {
    if (rule.off && value === 0) return { ms: 0 };
    const low = rule.minMs === undefined ? value > 0 : value >= rule.minMs;
    return low && value <= rule.maxMs ? { ms: value } : outOfRange(`${value} ms`);
  }
  const text = value.trim();
  if (rule.off && text.toLowerCase() === 'off') return { ms: 0 };
  const parsed = parseGoDuration(text);
  if ('problem' in parsed) {
    return {
      problem: `invalid duration '${shown(value)}' (use e.g. 24h, 90m): ${why(parsed.problem)}; ${GRAMMAR}`,
    };
  }
  const { ns } = parsed;
  if (rule.off && ns === 0n) return { ms: 0 };
  const low = rule.minMs === undefined ? ns > 0n : ns >= BigInt(rule.minMs) * NS_PER_MS;
  if (!low || ns > BigInt(rule.maxMs) * NS_PER_MS) return outOfRange(`'${shown(value)}'`);
  return { ms: Number((ns + NS_PER_MS - 1n) / NS_PER_MS) };
}
