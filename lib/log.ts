import { AsyncLocalStorage } from 'node:async_hooks';
import pino from 'pino';

export type Logger = pino.Logger;

const requestIds = new AsyncLocalStorage<string>();

/** Runs `work` so that every line sky's logger writes meanwhile, however deep the call, has `reqId`. */
export function withRequestId<T>(reqId: string, work: () => T): T {
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
  return destination ? pino(options, destination) : pino(options);
}
