import type { Request } from 'express';
import type { AuditTrail } from '../audit/trail';
import type { Config } from '../config/types';
import type { Connector, Identity } from '../connector';
import type { Metrics } from '../health/metrics';
import type { Logger } from '../log';
import type { RateLimitRecords } from '../store';
import type { TeamStore } from '../teams/store';
import type { Revocations } from '../tokens/revocations';
import type { SkyClaims, TokenVerifier } from '../tokens';
import type { AutomationTokens } from '../tokens/automation';
import type { Grants, LoginFamily } from '../tokens/grants';
import type { CurrentGroups } from '../tokens/groups';

/** A signed token and, when a refresh family was started or rotated for it, the client's refresh token. */
export interface Issued {
  token: string;
  claims: SkyClaims;
  refreshToken?: string;
}

/** What the sky() router puts on every request it sees, so the guards can work on the host's routes. */
export interface SkyContext {
  config: Config;
  /** The enabled connectors, in the login page's order. */
  connectors: readonly Connector[];
  verifier: TokenVerifier;
  revocations: Revocations;
  teams: TeamStore;
  grants: Grants;
  /** The groups a request acts on, kept within SKY_GROUPS_MAX_AGE of Bitbucket (SPEC §5.3). */
  groups: CurrentGroups;
  /** Per-client request counters (the login and token limits). */
  limits: RateLimitRecords;
  /** The teams' automation tokens (README "Automation tokens"). */
  automationTokens: AutomationTokens;
  /** The audit trail (README "Audit trail"). */
  audit: AuditTrail;
  log: Logger;
  /** sky's Prometheus metrics (README "Metrics"). */
  metrics: Metrics;
  /**
   * Issues a token of a login family for a person from their CURRENT teams (`not_in_any_team` when they
   * have none); the family is started or rotated only once the person is known to have a team.
   * `fresh`: the identity was just read from the upstream, so every node learns its groups.
   */
  issue(identity: Identity, family: () => Promise<LoginFamily>, fresh?: boolean): Promise<Issued>;
}

/** Where sky's cookies live: the mount path, Secure per the setting (SPEC §7.2). */
export function cookieAttributes(config: Pick<Config, 'mountPath' | 'cookieSecure'>): {
  path: string;
  secure: boolean;
} {
  return { path: config.mountPath || '/', secure: config.cookieSecure };
}

/**
 * What sky knows of one request: its router's context and, once a guard has passed it, the verified
 * claims. It lives in one WeakMap entry keyed by the request, not in properties on it: each property
 * added to Express's request objects cost a host route about 5 % of its CPU, and each WeakMap entry
 * costs more than the small record it holds (bench/before-after.md).
 */
export interface RequestState {
  readonly ctx: SkyContext;
  claims: SkyClaims | undefined;
}

const requests = new WeakMap<Request, RequestState>();

/** Done by the sky() router for every request it sees. */
export function attachContext(req: Request, ctx: SkyContext): void {
  requests.set(req, { ctx, claims: undefined });
}

/** What sky knows of this request, if it went through a sky() router. */
export function requestState(req: Request): RequestState | undefined {
  return requests.get(req);
}

/** The context of the sky() router this request went through, if any. */
export function skyContextOf(req: Request): SkyContext | undefined {
  return requests.get(req)?.ctx;
}

/** The claims of the request's token once a guard (requiresAuth, requiresTeamRole, …) has verified it. */
export function claimsOf(req: Request): SkyClaims | undefined {
  return requests.get(req)?.claims;
}

declare module 'express-serve-static-core' {
  interface Request {
    /** A request id (sky's own answers only): the caller's X-Request-Id when it is sane, else a fresh one. */
    skyRequestId?: string;
  }
}
