import pino from 'pino';

export type Logger = pino.Logger;

/**
 * One line per event. Paths that could carry credentials are redacted at the logger, so a careless
 * call site still cannot print a token, a secret or a cookie.
 */
export function createLogger(level: string = process.env['LOG_LEVEL'] ?? 'info'): Logger {
  return pino({
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
        'req.headers.authorization',
        'req.headers.cookie',
        'res.headers["set-cookie"]',
      ],
      censor: '[redacted]',
    },
  });
}
