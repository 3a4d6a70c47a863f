/** Stable error codes: callers branch on `err.code`, never on messages. */
export type SkyErrorCode =
  | 'invalid_config'
  | 'not_authorized'
  | 'forbidden'
  | 'invalid_request'
  | 'invalid_state'
  | 'access_denied'
  | 'not_in_any_team'
  | 'not_in_allowed_teams'
  | 'invalid_grant'
  | 'unsupported_grant_type'
  | 'invalid_team'
  | 'team_not_found'
  | 'upstream_error'
  | 'upstream_unavailable'
  | 'upstream_timeout'
  | 'upstream_rate_limited'
  | 'upstream_revoked'
  | 'upstream_forbidden'
  | 'upstream_gone'
  | 'store_unavailable'
  | 'store_full'
  | 'clock_skew'
  | 'payload_too_large'
  | 'rate_limited'
  | 'not_found'
  | 'conflict'
  | 'method_not_allowed'
  | 'internal';

const DEFAULT_STATUS: Record<SkyErrorCode, number> = {
  invalid_config: 500,
  not_authorized: 401,
  forbidden: 403,
  invalid_request: 400,
  invalid_state: 400,
  access_denied: 403,
  not_in_any_team: 403,
  not_in_allowed_teams: 403,
  invalid_grant: 400,
  unsupported_grant_type: 400,
  invalid_team: 400,
  team_not_found: 404,
  upstream_error: 502,
  upstream_unavailable: 503,
  upstream_timeout: 504,
  upstream_rate_limited: 503,
  upstream_revoked: 401,
  upstream_forbidden: 502,
  upstream_gone: 502,
  store_unavailable: 503,
  store_full: 503,
  clock_skew: 503,
  payload_too_large: 413,
  rate_limited: 429,
  not_found: 404,
  conflict: 409,
  method_not_allowed: 405,
  internal: 500,
};

export interface SkyErrorOptions {
  status?: number;
  cause?: unknown;
  /** Who the error is about (a subject): on the error handler's log line, never in the answer. */
  sub?: string;
}

/** The one error class of sky: a stable `code`, the HTTP `status` it maps to, and the `cause`. */
export class SkyError extends Error {
  readonly code: SkyErrorCode;
  readonly status: number;
  readonly sub: string | undefined;

  constructor(code: SkyErrorCode, message: string, options: SkyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SkyError';
    this.code = code;
    this.status = options.status ?? DEFAULT_STATUS[code];
    this.sub = options.sub;
  }
}

export function isSkyError(err: unknown): err is SkyError {
  return err instanceof SkyError;
}
