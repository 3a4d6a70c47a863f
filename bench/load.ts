import autocannon from 'autocannon';
import { cpuMicros } from './nodes';

export interface LoadOptions {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  connections: number;
  seconds: number;
  /** The node's pid: its CPU time per answered request is measured too. */
  pid?: number;
}

export interface LoadResult {
  /** 2xx answers per second: anything else would flatter a guard that refuses quickly. */
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** CPU µs the node spent per 2xx answer (NaN without a pid or /proc). */
  cpuUs: number;
}

/** One autocannon run from this process (the web nodes are other processes). */
export async function load(options: LoadOptions): Promise<LoadResult> {
  const cpuBefore = options.pid === undefined ? undefined : cpuMicros(options.pid);
  const result = await autocannon({
    url: options.url,
    method: options.method,
    headers: options.headers,
    connections: options.connections,
    duration: options.seconds,
  });
  const cpuAfter = options.pid === undefined ? undefined : cpuMicros(options.pid);
  const out: LoadResult = {
    rps: result['2xx'] / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    cpuUs: cpuBefore === undefined || cpuAfter === undefined ? NaN : (cpuAfter - cpuBefore) / result['2xx'],
  };
  if (out.non2xx > 0 || out.errors > 0) {
    throw new Error(`${options.method} ${options.url}: ${out.non2xx} non-2xx answers, ${out.errors} errors`);
  }
  return out;
}

/** `count` requests, the i-th shaped by `request(i)`: visits every team, or every token, once. */
export async function loadEach(
  url: string,
  count: number,
  request: (i: number) => { path: string; headers: Record<string, string> },
  connections: number,
): Promise<LoadResult> {
  let next = 0;
  const result = await autocannon({
    url,
    connections,
    amount: count,
    requests: [
      {
        setupRequest: (req) => {
          const { path, headers } = request(next++ % count);
          return { ...req, method: 'GET', path, headers };
        },
      },
    ],
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${url}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
  }
  return {
    rps: result['2xx'] / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    cpuUs: NaN,
  };
}
