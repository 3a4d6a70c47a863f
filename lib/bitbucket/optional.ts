import { SkyError } from '../errors';
import type { Logger } from '../log';

/** The enrichments a login can do without (SPEC §5.3): dex's includeTeamGroups and getWorkspacePermissions. */
export type OptionalEndpoint = '1.0 groups' | 'workspace permission';

const HOUR_MS = 60 * 60_000;

/**
 * Optional calls never lock anyone out: a refusal (a 4xx: 403, 404, 410, …) skips that enrichment for
 * that workspace, with one warning per endpoint per hour that names the answer; an endpoint that is gone
 * (404/410: Atlassian lists the 1.0 groups API as removed) is not called again for the hour, so a removed
 * API costs no Bitbucket budget. Transient failures (5xx, timeouts, 429 after retries) still fail.
 */
export class OptionalCalls {
  private readonly warnedAt = new Map<OptionalEndpoint, number>();
  private readonly goneUntil = new Map<OptionalEndpoint, number>();

  constructor(private readonly log?: Logger) {}

  /** Whether the endpoint is worth calling now (not found gone within the hour). */
  available(endpoint: OptionalEndpoint, now = Date.now()): boolean {
    return (this.goneUntil.get(endpoint) ?? 0) <= now;
  }

  /** `call`'s answer, or `fallback` when Bitbucket refused it; anything transient is thrown. */
  async run<T>(endpoint: OptionalEndpoint, fallback: T, call: () => Promise<T>): Promise<T> {
    if (!this.available(endpoint)) return fallback;
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof SkyError) || (err.code !== 'upstream_forbidden' && err.code !== 'upstream_gone')) {
        throw err;
      }
      const now = Date.now();
      if (err.code === 'upstream_gone') this.goneUntil.set(endpoint, now + HOUR_MS);
      if ((this.warnedAt.get(endpoint) ?? -Infinity) + HOUR_MS <= now) {
        this.warnedAt.set(endpoint, now);
        this.log?.warn(
          { endpoint, answer: err.message },
          err.code === 'upstream_gone'
            ? `Bitbucket Cloud's ${endpoint} endpoint is gone: that enrichment of groups is skipped for an hour`
            : `Bitbucket Cloud refused a ${endpoint} call: that enrichment is skipped (logged once an hour)`,
        );
      }
      return fallback;
    }
  }
}
