import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { resolveConfig, type Config, type SkyOptions } from '../../lib/config';
import { parseGoDuration, type DurationProblem } from '../../lib/config/duration';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-duration-'));
function dexFile(name: string, extra: string): string {
  const p = path.join(dir, name);
  writeFileSync(
    p,
    `connectors:\n- type: bitbucket-cloud\n  id: bitbucket-cloud\n  config:\n    clientID: a\n    clientSecret: b\n${extra}`,
  );
  return p;
}
const resolveEnv = (env: Record<string, string>, options: SkyOptions = {}): Config =>
  resolveConfig({ ...options, env });
const problemOf = (run: () => unknown): string => {
  try {
    run();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected the configuration to be refused');
};

const NS = 1n;
const US = 1_000n;
const MS = 1_000_000n;
const S = 1_000_000_000n;
const M = 60n * S;
const H = 60n * M;
const MAX = (1n << 63n) - 1n;
const MIN = -(1n << 63n);

// Go's src/time/time_test.go, parseDurationTests: the same inputs, the same nanoseconds.
test.each<[string, bigint]>([
  // simple
  ['0', 0n],
  ['5s', 5n * S],
  ['30s', 30n * S],
  ['1478s', 1478n * S],
  // sign
  ['-5s', -5n * S],
  ['+5s', 5n * S],
  ['-0', 0n],
  ['+0', 0n],
  // decimal
  ['5.0s', 5n * S],
  ['5.6s', 5n * S + 600n * MS],
  ['5.s', 5n * S],
  ['.5s', 500n * MS],
  ['1.0s', 1n * S],
  ['1.00s', 1n * S],
  ['1.004s', 1n * S + 4n * MS],
  ['1.0040s', 1n * S + 4n * MS],
  ['100.00100s', 100n * S + 1n * MS],
  // different units
  ['10ns', 10n * NS],
  ['11us', 11n * US],
  ['12\u00b5s', 12n * US],
  ['12\u03bcs', 12n * US],
  ['13ms', 13n * MS],
  ['14s', 14n * S],
  ['15m', 15n * M],
  ['16h', 16n * H],
  // composite durations
  ['3h30m', 3n * H + 30n * M],
  ['10.5s4m', 4n * M + 10n * S + 500n * MS],
  ['-2m3.4s', -(2n * M + 3n * S + 400n * MS)],
  ['1h2m3s4ms5us6ns', 1n * H + 2n * M + 3n * S + 4n * MS + 5n * US + 6n * NS],
  ['39h9m14.425s', 39n * H + 9n * M + 14n * S + 425n * MS],
  // large value
  ['52763797000ns', 52763797000n * NS],
  // more than 9 digits after the decimal point (golang.org/issue/6617)
  ['0.3333333333333333333h', 20n * M],
  // 9007199254740993 = 1<<53+1 cannot be stored exactly in a float64
  ['9007199254740993ns', (1n << 53n) + 1n],
  // the largest duration an int64 holds
  ['9223372036854775807ns', MAX],
  ['9223372036854775.807us', MAX],
  ['9223372036s854ms775us807ns', MAX],
  ['-9223372036854775808ns', MIN],
  ['-9223372036854775.808us', MIN],
  ['-9223372036s854ms775us808ns', MIN],
  // the largest negative round-trip value (golang.org/issue/48629)
  ['-2562047h47m16.854775808s', MIN],
  // huge string (golang.org/issue/15011)
  ['0.100000000000000000000h', 6n * M],
  // the first overflow check in leadingFraction
  ['0.830103483285477580700h', 49n * M + 48n * S + 372539827n * NS],
  // Go's round trip of its extremes: Duration(math.MaxInt64).String()
  ['2562047h47m16.854775807s', MAX],
  // leading zeros are digits like any other
  ['000000000000000000000001s', 1n * S],
  // the and the brief's examples
  ['1.5h', 90n * M],
  ['90m', 90n * M],
  ['500ms', 500n * MS],
  ['300ms', 300n * MS],
  ['-1.5h', -90n * M],
  ['2h45m', 2n * H + 45n * M],
  ['1h0m0.5s', H + 500n * MS],
])('Go accepts %j', (text, ns) => {
  expect(parseGoDuration(text)).toEqual({ ns });
});

// Go's parseDurationErrorTests (Go also refuses those invalid UTF-8 bytes, which a JS string cannot hold:
// their Latin-1 look-alikes stand in), each with the error Go gives.
test.each<[string, DurationProblem]>([
  ['', { kind: 'empty' }],
  ['3', { kind: 'missing_unit', after: '3' }],
  ['-', { kind: 'no_number', at: '' }],
  ['s', { kind: 'no_number', at: 's' }],
  ['.', { kind: 'no_number', at: '.' }],
  ['-.', { kind: 'no_number', at: '.' }],
  ['.s', { kind: 'no_number', at: '.s' }],
  ['+.s', { kind: 'no_number', at: '.s' }],
  ['1d', { kind: 'unknown_unit', unit: 'd' }],
  ['\u0085\u0085', { kind: 'no_number', at: '\u0085\u0085' }],
  ['\u00ffff', { kind: 'no_number', at: '\u00ffff' }],
  ['hello \u00ffff world', { kind: 'no_number', at: 'hello \u00ffff world' }],
  ['\uFFFD', { kind: 'no_number', at: '\uFFFD' }],
  ['\uFFFD hello \uFFFD world', { kind: 'no_number', at: '\uFFFD hello \uFFFD world' }],
  // overflow
  ['9223372036854775810ns', { kind: 'overflow' }],
  ['9223372036854775808ns', { kind: 'overflow' }],
  ['-9223372036854775809ns', { kind: 'overflow' }],
  ['9223372036854776us', { kind: 'overflow' }],
  ['3000000h', { kind: 'overflow' }],
  ['9223372036854775.808us', { kind: 'overflow' }],
  ['9223372036854ms775us808ns', { kind: 'overflow' }],
  // sky's old grammar took none of these either; Go's takes no spaces, days or bare numbers
  ['1 day', { kind: 'unknown_unit', unit: ' day' }],
  ['5000', { kind: 'missing_unit', after: '5000' }],
  ['00', { kind: 'missing_unit', after: '00' }],
  ['1h-5m', { kind: 'unknown_unit', unit: 'h-' }],
  ['1h.', { kind: 'no_number', at: '.' }],
  ['1h.m', { kind: 'no_number', at: '.m' }],
  ['1H', { kind: 'unknown_unit', unit: 'H' }],
  ['1sec', { kind: 'unknown_unit', unit: 'sec' }],
])('Go refuses %j', (text, problem) => {
  expect(parseGoDuration(text)).toEqual({ problem });
});

test('digits past int64 overflow before the unit is looked at, however many there are (as Go)', () => {
  expect(parseGoDuration(`1${'0'.repeat(100_000)}s`)).toEqual({ problem: { kind: 'overflow' } });
  expect(parseGoDuration(`1${'0'.repeat(30)}`)).toEqual({ problem: { kind: 'overflow' } });
});

test('any whole number of milliseconds written as h/m/s parses back to itself (Go round trip)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (ms) => {
      const h = Math.floor(ms / 3_600_000);
      const m = Math.floor(ms / 60_000) % 60;
      const s = (ms % 60_000) / 1000;
      expect(parseGoDuration(`${h}h${m}m${s}s`)).toEqual({ ns: BigInt(ms) * MS });
    }),
  );
});

describe('every duration setting reads the Go grammar', () => {
  test.each<[keyof Config, Record<string, string>, number]>([
    ['authDurationMs', { CONCOURSE_AUTH_DURATION: '1.5h' }, 90 * 60_000],
    ['authDurationMs', { CONCOURSE_AUTH_DURATION: '90m' }, 90 * 60_000],
    ['authDurationMs', { CONCOURSE_AUTH_DURATION: ' 1h30m ' }, 90 * 60_000],
    ['refreshDurationMs', { SKY_REFRESH_DURATION: '2160h' }, 2160 * 3_600_000],
    ['refreshDurationMs', { CONCOURSE_AUTH_DURATION: '1h', SKY_REFRESH_DURATION: '1h0m0.5s' }, 3_600_500],
    ['outageGraceMs', { SKY_OUTAGE_GRACE: '0.5m' }, 30_000],
    ['replicaWaitMs', { SKY_REDIS_REPLICA_WAIT: '500ms' }, 500],
    ['shutdownGraceMs', { SKY_SHUTDOWN_GRACE: '2.5s' }, 2_500],
    ['groupsMaxAgeMs', { SKY_GROUPS_MAX_AGE: '1s' }, 1_000],
    ['groupsMaxAgeMs', { SKY_GROUPS_MAX_AGE: '1000000us' }, 1_000],
    // below a millisecond rounds up: a positive duration never becomes 0
    ['shutdownGraceMs', { SKY_SHUTDOWN_GRACE: '1500us' }, 2],
    ['replicaWaitMs', { SKY_REDIS_REPLICA_WAIT: '1ns' }, 1],
    ['outageGraceMs', { SKY_OUTAGE_GRACE: '1m0.0000001s' }, 60_001],
    // SKY_REDIS_REPLICA_WAIT: off, and every zero Go reads, never wait
    ['replicaWaitMs', { SKY_REDIS_REPLICA_WAIT: 'off' }, 0],
    ['replicaWaitMs', { SKY_REDIS_REPLICA_WAIT: 'OFF' }, 0],
    ['replicaWaitMs', { SKY_REDIS_REPLICA_WAIT: '0' }, 0],
    ['replicaWaitMs', { SKY_REDIS_REPLICA_WAIT: '-0' }, 0],
    ['replicaWaitMs', { SKY_REDIS_REPLICA_WAIT: '0s' }, 0],
  ])('%s from %j', (key, env, ms) => {
    expect(resolveEnv(env)[key]).toBe(ms);
  });

  test('numbers given in code are milliseconds, as before', () => {
    expect(
      resolveConfig({
        env: {},
        authDuration: 5_000,
        refreshDuration: 60_000,
        outageGrace: 1_500,
        replicaWait: 0,
        shutdownGrace: 250,
        groupsMaxAge: 1_000,
      }),
    ).toMatchObject({
      authDurationMs: 5_000,
      refreshDurationMs: 60_000,
      outageGraceMs: 1_500,
      replicaWaitMs: 0,
      shutdownGraceMs: 250,
      groupsMaxAgeMs: 1_000,
    });
    expect(resolveConfig({ env: {}, outageGrace: '1.5s', groupsMaxAge: '2s' })).toMatchObject({
      outageGraceMs: 1_500,
      groupsMaxAgeMs: 2_000,
    });
  });
});

describe('the bounds of each setting, at and past the edge', () => {
  test.each<[string, string, string]>([
    ['CONCOURSE_AUTH_DURATION', '720h', '720h0m0.000001s'],
    ['SKY_REFRESH_DURATION', '2160h', '2160h1ns'],
    ['SKY_OUTAGE_GRACE', '10m', '600001ms'],
    ['SKY_REDIS_REPLICA_WAIT', '1m', '60.001s'],
    ['SKY_SHUTDOWN_GRACE', '10m', '10.5m'],
    ['SKY_GROUPS_MAX_AGE', '24h', '24h1ms'],
  ])('%s: %s is the longest accepted, %s is refused', (name, longest, past) => {
    const env = (value: string) => ({ [name]: value });
    expect(() => resolveEnv(env(longest))).not.toThrow();
    expect(problemOf(() => resolveEnv(env(past)))).toContain(`${name}: duration must be `);
    expect(problemOf(() => resolveEnv(env(past)))).toContain(`at most ${longest}`);
    expect(problemOf(() => resolveEnv(env(past)))).toContain(`not '${past}'`);
  });

  test.each<[string, string, string]>([
    ['CONCOURSE_AUTH_DURATION', '0', 'more than 0 and at most 720h'],
    ['CONCOURSE_AUTH_DURATION', '-1h', 'more than 0 and at most 720h'],
    ['SKY_REFRESH_DURATION', '0s', 'more than 0 and at most 2160h'],
    ['SKY_OUTAGE_GRACE', '-5s', 'more than 0 and at most 10m'],
    ['SKY_SHUTDOWN_GRACE', '0ms', 'more than 0 and at most 10m'],
    ['SKY_REDIS_REPLICA_WAIT', '-1s', 'more than 0 and at most 1m, or off (0)'],
    ['SKY_GROUPS_MAX_AGE', '999.9999ms', 'at least 1s and at most 24h'],
    ['SKY_GROUPS_MAX_AGE', '0', 'at least 1s and at most 24h'],
  ])('%s=%s is refused: %s', (name, value, accepted) => {
    expect(problemOf(() => resolveEnv({ [name]: value }))).toContain(
      `${name}: duration must be ${accepted}, not '${value}'`,
    );
  });

  test('numbers in code keep the same bounds, and the message says they are milliseconds', () => {
    expect(problemOf(() => resolveConfig({ env: {}, shutdownGrace: 0 }))).toContain(
      'option shutdownGrace: duration must be more than 0 and at most 10m, not 0 ms',
    );
    expect(problemOf(() => resolveConfig({ env: {}, groupsMaxAge: 999 }))).toContain(
      'option groupsMaxAge: duration must be at least 1s and at most 24h, not 999 ms',
    );
  });

  test('the refresh lifetime is still at least the token lifetime', () => {
    expect(
      problemOf(() => resolveEnv({ CONCOURSE_AUTH_DURATION: '2h', SKY_REFRESH_DURATION: '1.5h' })),
    ).toContain('SKY_REFRESH_DURATION: the refresh lifetime must be at least the token lifetime');
  });
});

describe('a bad duration names its source, quotes the value and says what is accepted', () => {
  const accepted = "Go's duration syntax: decimal numbers, each with a unit ns, us, µs, ms, s, m or h";

  test('an environment variable', () => {
    const message = problemOf(() => resolveEnv({ SKY_OUTAGE_GRACE: '1d' }));
    expect(message).toContain(
      "SKY_OUTAGE_GRACE: invalid duration '1d' (use e.g. 24h, 90m): unknown unit 'd'; " + accepted,
    );
    expect(problemOf(() => resolveEnv({ SKY_SHUTDOWN_GRACE: '30' }))).toContain(
      "SKY_SHUTDOWN_GRACE: invalid duration '30' (use e.g. 24h, 90m): missing unit after 30",
    );
    expect(problemOf(() => resolveEnv({ SKY_GROUPS_MAX_AGE: '3000000h' }))).toContain(
      "SKY_GROUPS_MAX_AGE: invalid duration '3000000h' (use e.g. 24h, 90m): longer than Go's longest duration",
    );
    expect(problemOf(() => resolveEnv({ SKY_REDIS_REPLICA_WAIT: 'never' }))).toContain(
      "SKY_REDIS_REPLICA_WAIT: invalid duration 'never' (use e.g. 24h, 90m): expected a number at 'never'",
    );
  });

  test('a dex YAML expiry value, by file and path; YAML wins over the environment', () => {
    const good = dexFile(
      'expiry.yaml',
      'expiry:\n  idTokens: 1.5h\n  refreshTokens:\n    absoluteLifetime: 48h\n',
    );
    expect(resolveEnv({ SKY_CONFIG: good, CONCOURSE_AUTH_DURATION: '24h' })).toMatchObject({
      authDurationMs: 90 * 60_000,
      refreshDurationMs: 48 * 3_600_000,
    });

    const bad = dexFile('bad-expiry.yaml', 'expiry:\n  idTokens: 1 day\n');
    expect(problemOf(() => resolveEnv({ SKY_CONFIG: bad }))).toContain(
      `${bad}: expiry.idTokens: invalid duration '1 day' (use e.g. 24h, 90m): unknown unit ' day'; ${accepted}`,
    );
    const long = dexFile('long-expiry.yaml', 'expiry:\n  refreshTokens:\n    absoluteLifetime: 9000h\n');
    expect(problemOf(() => resolveEnv({ SKY_CONFIG: long }))).toContain(
      `${long}: expiry.refreshTokens.absoluteLifetime: duration must be more than 0 and at most 2160h, not '9000h'`,
    );
    const number = dexFile('number-expiry.yaml', 'expiry:\n  idTokens: 60\n');
    expect(problemOf(() => resolveEnv({ SKY_CONFIG: number }))).toContain(
      `${number}: expiry.idTokens must be a duration string such as 24h`,
    );
    const list = dexFile('list-expiry.yaml', 'expiry: [24h]\n');
    expect(problemOf(() => resolveEnv({ SKY_CONFIG: list }))).toContain(`${list}: expiry must be a mapping`);
  });

  test('an option given in code', () => {
    expect(problemOf(() => resolveConfig({ env: {}, authDuration: '' }))).toContain(
      "option authDuration: invalid duration '' (use e.g. 24h, 90m): it is empty",
    );
    expect(problemOf(() => resolveConfig({ env: {}, replicaWait: '2 s' }))).toContain(
      "option replicaWait: invalid duration '2 s' (use e.g. 24h, 90m): unknown unit ' s'",
    );
  });

  test('a long or odd value is shown cut to 40 characters, control characters escaped', () => {
    const message = problemOf(() => resolveEnv({ CONCOURSE_AUTH_DURATION: `1h${'x'.repeat(5000)}` }));
    expect(message).toContain(`invalid duration '1h${'x'.repeat(38)}…'`);
    expect(message.length).toBeLessThan(400);
    expect(problemOf(() => resolveConfig({ env: {}, outageGrace: '5s\n6x' }))).toContain(
      "option outageGrace: invalid duration '5s\\u000a6x' (use e.g. 24h, 90m): unknown unit 's\\u000a'",
    );
  });

  test('every bad duration is named in one error', () => {
    const message = problemOf(() =>
      resolveEnv({ CONCOURSE_AUTH_DURATION: '1y', SKY_OUTAGE_GRACE: '-1s', SKY_SHUTDOWN_GRACE: 'soon' }),
    );
    expect(message).toMatch(/CONCOURSE_AUTH_DURATION: .*SKY_OUTAGE_GRACE: .*SKY_SHUTDOWN_GRACE: /);
  });
});
