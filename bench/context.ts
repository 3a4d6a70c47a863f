import type { FakeBitbucket } from '../lib/testing';
import type { BenchNode, NodeFlags } from './nodes';
import type { NodeSpec } from './spec';

/** How much of everything: the full run, or --quick (proves the harness, judges nothing). */
export interface Settings {
  quick: boolean;
  rounds: number;
  /** autocannon connections. */
  connections: number;
  /** Seconds per autocannon measurement. */
  loadSeconds: number;
  /** Seconds of load on each target before the first round (JIT, caches, connection pools). */
  warmupSeconds: number;
  /** D: the delay the fake Bitbucket adds to every call in scenario 2. */
  delayMs: number;
  loginsPerRound: number;
  teamCounts: number[];
  teamsOfCalls: number;
  memorySessions: number;
  loginConcurrency: number;
  /** Longest wait for a node's RSS to settle after a burst (scenario 4). */
  settleMs: number;
}

export function settingsFor(quick: boolean, rounds?: number): Settings {
  if (quick) {
    return {
      quick,
      rounds: rounds ?? 1,
      connections: 4,
      loadSeconds: 1,
      warmupSeconds: 0,
      delayMs: 20,
      loginsPerRound: 2,
      teamCounts: [10, 100, 1_000],
      teamsOfCalls: 20,
      memorySessions: 50,
      loginConcurrency: 4,
      settleMs: 2_000,
    };
  }
  return {
    quick,
    rounds: rounds ?? 8,
    connections: 10,
    loadSeconds: 2,
    warmupSeconds: 2,
    delayMs: 50,
    loginsPerRound: 8,
    teamCounts: [10, 1_000, 100_000],
    teamsOfCalls: 300,
    memorySessions: 10_000,
    loginConcurrency: 16,
    settleMs: 90_000,
  };
}

/** One judged number of a scenario: a ratio, a multiple of D, or MB, against the issue's target. */
export interface Result {
  id: string;
  name: string;
  /** What was measured, for the table ("9,800 vs 10,400 req/s"). */
  measured: string;
  value: number;
  /** How `value` reads: "×", "× D", "MB". */
  unit: string;
  target: { op: '>=' | '<='; value: number };
  /** Shown, not judged (no target in the issue, or a number the code it needs is not ours to change). */
  informational?: boolean;
}

export const passes = (r: Result): boolean =>
  r.target.op === '>=' ? r.value >= r.target.value : r.value <= r.target.value;

export interface ScenarioReport {
  id: number;
  title: string;
  /** How it was measured, for RESULTS.md. */
  method: string;
  results: Result[];
  /** Markdown tables of the medians and samples behind the results. */
  details: string;
  /** Everything measured, for bench/results/*.json. */
  raw: unknown;
}

export interface BenchContext {
  settings: Settings;
  redisUrl: string;
  fake: FakeBitbucket;
  /** Starts a web node against the bench Redis and the fake; stopped by run.ts at the end. */
  node(spec: Omit<NodeSpec, 'redisUrl' | 'fake'>, flags?: NodeFlags): Promise<BenchNode>;
  log(line: string): void;
}
