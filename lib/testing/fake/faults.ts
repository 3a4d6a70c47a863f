import type { ServerResponse } from 'node:http';
import { sendError } from './http';

/** The fake's fault switches: latency, statuses with Retry-After, hangs, garbage, huge bodies, redirects. */

export interface Fault {
  /** Which requests: token, api, authorize, all (default), or a RegExp tested on the path. */
  match?: 'token' | 'api' | 'authorize' | 'all' | RegExp;
  /** Delay before answering (or before the other effects of this fault). */
  latencyMs?: number;
  /** Answer this status with a Bitbucket error body. */
  status?: number;
  /** Sent as Retry-After (use with status 429): seconds, or a string as is (an HTTP date). */
  retryAfter?: number | string;
  /** hang: never answer; malformed: invalid JSON; html: a 200 HTML page; huge: a 20 MB body; redirect: 302 to evil.example. */
  kind?: 'hang' | 'malformed' | 'html' | 'huge' | 'redirect';
  /** How many matching requests it applies to before it is removed (default: forever). */
  times?: number;
  /** How many matching requests pass untouched before it applies (e.g. fail only the second page). */
  skip?: number;
}

export type RouteKind = 'token' | 'authorize' | 'api';

const HUGE_BODY_MB = 20;

export function routeKind(path: string): RouteKind {
  if (path === '/site/oauth2/access_token') return 'token';
  if (path === '/site/oauth2/authorize') return 'authorize';
  return 'api';
}

function matches(fault: Fault, path: string): boolean {
  const match = fault.match ?? 'all';
  return match instanceof RegExp ? match.test(path) : match === 'all' || match === routeKind(path);
}

/** A 20 MB JSON-typed body, so clients must bound what they read. */
function sendHuge(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  const chunk = Buffer.alloc(1024 * 1024, 0x20);
  for (let i = 0; i < HUGE_BODY_MB && !res.destroyed; i++) res.write(chunk);
  res.end();
}

export class Faults {
  private list: (Fault & { left: number; toSkip: number })[] = [];
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private stopped = false;

  add(fault: Fault): void {
    this.list.push({ ...fault, left: fault.times ?? Infinity, toSkip: fault.skip ?? 0 });
  }

  clear(): void {
    this.list = [];
  }

  /** Ends every pending latency at once; no fault answers after this (the server is closing). */
  stop(): void {
    this.stopped = true;
    for (const sleep of this.sleeps) {
      clearTimeout(sleep.timer);
      sleep.wake();
    }
  }

  /** Applies the first matching fault, in the order added; true when the request is taken care of. */
  async apply(res: ServerResponse, path: string): Promise<boolean> {
    const fault = this.list.find((f) => matches(f, path));
    if (!fault) return false;
    if (fault.toSkip > 0) {
      fault.toSkip--;
      return false;
    }
    fault.left--;
    if (fault.left <= 0) this.list = this.list.filter((f) => f !== fault);
    if (fault.latencyMs) await this.sleep(fault.latencyMs);
    if (this.stopped) return true;
    switch (fault.kind) {
      case 'hang':
        return true; // never answer; the fake's stop() destroys the socket
      case 'malformed':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"values": [{"type": "us');
        return true;
      case 'html':
        res
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<html><body>Down for maintenance</body></html>');
        return true;
      case 'redirect':
        res.writeHead(302, { location: 'http://evil.example/' }).end();
        return true;
      case 'huge':
        sendHuge(res);
        return true;
      case undefined:
        break;
    }
    if (fault.status === undefined) return false; // latency only: then answer normally
    const retryAfter: Record<string, string> =
      fault.retryAfter === undefined ? {} : { 'retry-after': String(fault.retryAfter) };
    sendError(res, fault.status, `Fault injected by the fake Bitbucket (HTTP ${fault.status}).`, retryAfter);
    return true;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => entry.wake(), ms),
        wake: () => {
          this.sleeps.delete(entry);
          resolve();
        },
      };
      this.sleeps.add(entry);
    });
  }
}
