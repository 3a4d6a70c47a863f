import { AsyncLocalStorage } from 'node:async_hooks';
import type { EventEmitter } from 'node:events';
import pino from 'pino';
import pretty from 'pino-pretty';

export type Logger = pino.Logger;

const requestIds = new AsyncLocalStorage<string>();
/** sky's own requests whose responses have not closed yet. */
let inFlight = 0;

/**
 * Runs `work`, the handling of one of sky's own requests, so that every line sky's logger writes for it,
 * however deep the call, has `reqId`. While enabled, AsyncLocalStorage (async hooks on Node 20) costs
 * every async step of the process, the host app's requests too (≈ 4 % of a small route's CPU): so it is
 * enabled only while one of sky's own requests is in flight, and disabled when the last one's response
 * closes. Work a request leaves running after its response logs without the id.
 */
export function withRequestId<T>(reqId: string, response: EventEmitter, work: () => T): T {
  inFlight++;
  response.once('close', () => {
    if (--inFlight === 0) requestIds.disable();
  });
  return requestIds.run(reqId, work);
}

/**
 * One line per event. Paths that could carry credentials are redacted at the logger, so a careless
 * call site still cannot print a token, a secret or a cookie.
 */
export function createLogger(
  level: string = process.env['LOG_LEVEL'] ?? 'info',
  destination?: pino.DestinationStream,
): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { name: 'sky' },
    redact: {
      paths: [
        'token',
        'accessToken',
        'refreshToken',
        'code',
        'state',
        'secret',
        'clientSecret',
        // Half of a refresh token, and enough to end its family (any wrong secret counts as reuse).
        'familyId',
        'req.headers.authorization',
        'req.headers.cookie',
        'res.headers["set-cookie"]',
      ],
      censor: '[redacted]',
    },
    mixin: () => {
      const reqId = requestIds.getStore();
      return reqId === undefined ? {} : { reqId };
    },
  };
  if (destination) return pino(options, destination);
  // A person at a terminal reads lines (pino-pretty, written in the same thread); everything else
  // (a pipe, a file, a log shipper) gets one JSON object per line.
  if (process.stdout.isTTY) {
    return pino(
      options,
      pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' }),
    );
  }
  return pino(options);
}
