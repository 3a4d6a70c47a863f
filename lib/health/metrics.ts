import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { SkyError } from '../errors';

/**
 * sky's Prometheus metrics (prom-client), one registry per sky() so two routers in one process never
 * clash. The web node serves it at /metrics; a host app serves `router.metrics` itself.
 */
export class Metrics {
  readonly registry = new Registry();

  /** Times this node found the store missing data it had (`kind`: teams, revocations). */
  readonly dataLoss = new Counter({
    name: 'sky_store_data_loss_total',
    help: 'Times this node found Redis missing data it knew: kind=teams (team main gone) or kind=revocations',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  /** Revocations this node wrote back after the store lost them. */
  readonly revocationsRestored = new Counter({
    name: 'sky_revocations_restored_total',
    help: 'Revocations this node wrote back to Redis after Redis lost them',
    registers: [this.registry],
  });

  /** This node's clock minus Redis's, as last measured. */
  readonly clockSkew = new Gauge({
    name: 'sky_clock_skew_seconds',
    help: "This node's clock minus Redis's clock (TIME), as last measured; sky corrects for it",
    registers: [this.registry],
  });

  /** 1 while /readyz does not say ready (data lost and not yet healed, a Redis that may lose data, cut off from Redis). */
  readonly degraded = new Gauge({
    name: 'sky_degraded',
    help: '1 while this node is degraded (see /readyz for the reasons)',
    registers: [this.registry],
  });

  /** Logins that ended with a token, by connector (browser, CLI and password logins). */
  readonly logins = new Counter({
    name: 'sky_logins_total',
    help: 'Logins that ended with a token, by connector',
    labelNames: ['connector'] as const,
    registers: [this.registry],
  });

  /** Logins refused, by sky's error code (not_in_any_team, access_denied, invalid_grant, upstream_error, …). */
  readonly loginRefusals = new Counter({
    name: 'sky_login_refusals_total',
    help: "Logins refused, by reason (sky's error code)",
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  /** Refresh-token grants, by result (issued, refused). */
  readonly refreshes = new Counter({
    name: 'sky_refreshes_total',
    help: 'Refresh-token grants at /sky/token, by result (issued or refused)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  /** Revocations this node made: a login family (logout, reuse) or every token of a user. */
  readonly revocations = new Counter({
    name: 'sky_revocations_total',
    help: 'Revocations made by this node, by kind (family: a logout or a reused refresh token; user: every token of a person)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  /**
   * The guards' verdicts: allowed, unauthenticated (401), forbidden (403), unavailable (5xx). Allowed
   * verdicts, one per guarded request, are added up in a plain number and handed to the counter when it
   * is read (a scrape): a labelled `inc()` per request cost the guard more than its own checks.
   */
  readonly guardDecisions: Counter<'result'> = new Counter({
    name: 'sky_guard_decisions_total',
    help: 'Decisions of requiresAuth, requiresTeamRole and requiresAdmin, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
    collect: () => {
      if (this.allowedSinceRead === 0) return;
      this.allowed.inc(this.allowedSinceRead);
      this.allowedSinceRead = 0;
    },
  });

  /** Requests refused by the per-address limits (429), by limit. */
  readonly rateLimited = new Counter({
    name: 'sky_rate_limited_total',
    help: 'Requests refused with 429 by the per-address and per-user limits, by limit (login, token, password)',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });

  /** Redis connection errors, and requests that failed because Redis did. */
  readonly redisErrors = new Counter({
    name: 'sky_redis_errors_total',
    help: 'Redis errors: connection errors (where=connection) and requests answered 503 because of Redis (where=request)',
    labelNames: ['where'] as const,
    registers: [this.registry],
  });

  /** Calls to a connector's upstream (Bitbucket Cloud), by endpoint and status. */
  readonly upstreamCalls = new Counter({
    name: 'sky_upstream_requests_total',
    help: 'Calls to an upstream identity provider, by connector, endpoint and status (an HTTP status, timeout or unreachable)',
    labelNames: ['connector', 'endpoint', 'status'] as const,
    registers: [this.registry],
  });

  readonly upstreamLatency = new Histogram({
    name: 'sky_upstream_request_duration_seconds',
    help: 'How long calls to an upstream identity provider took, by connector and endpoint',
    labelNames: ['connector', 'endpoint'] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  /** 1 while this node is cut off from Redis and answers from its copies (the outage grace). */
  readonly outageGrace = new Gauge({
    name: 'sky_outage_grace',
    help: '1 while this node is cut off from Redis and answers from its own copies (SKY_OUTAGE_GRACE)',
    registers: [this.registry],
  });

  private readonly allowed = this.guardDecisions.labels('allowed');
  private allowedSinceRead = 0;

  /** Counts one guard verdict: `true`, or the error it ended with. */
  guard(verdict: unknown): void {
    if (verdict === true) {
      this.allowedSinceRead++;
      return;
    }
    const status = verdict instanceof SkyError ? verdict.status : 500;
    this.guardDecisions.inc({
      result: status === 401 ? 'unauthenticated' : status === 403 ? 'forbidden' : 'unavailable',
    });
  }

  /** One upstream call: what it answered (a status, `timeout`, `unreachable`) and how long it took. */
  upstream(connector: string, endpoint: string, status: string, seconds: number): void {
    this.upstreamCalls.inc({ connector, endpoint, status });
    this.upstreamLatency.observe({ connector, endpoint }, seconds);
  }
}
