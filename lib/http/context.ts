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
import type { AutomationToken, AutomationTokens } from '../tokens/automation';
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

/*
 * What sky knows of a request lives in WeakMaps keyed by the request, not on it: each property added
 * to Express's request objects cost a host route about 5 % of its CPU (bench/before-after.md).
 */
const contexts = new WeakMap<Request, SkyContext>();
const verifiedTokens = new WeakMap<Request, SkyClaims>();
const automation = new WeakMap<Request, AutomationToken>();

/** Done by the sky() router for every request it sees. */
export function attachContext(req: Request, ctx: SkyContext): void {
  contexts.set(req, ctx);
}

/** The context of the sky() router this request went through, if any. */
export function skyContextOf(req: Request): SkyContext | undefined {
  return contexts.get(req);
}

/** Done by the guards once a request's token is verified. */
export function rememberClaims(req: Request, claims: SkyClaims): void {
  verifiedTokens.set(req, claims);
}

/** Done by requiresTeamRole once a request's automation token has passed. */
export function rememberAutomation(req: Request, token: AutomationToken): void {
  automation.set(req, token);
}

/** The automation token a request passed requiresTeamRole with, if it did. */
export function automationTokenOf(req: Request): AutomationToken | undefined {
  return automation.get(req);
}

/** The claims of the request's token once a guard (requiresAuth, requiresTeamRole, …) has verified it. */
export function claimsOf(req: Request): SkyClaims | undefined {
  return verifiedTokens.get(req);
}

declare module 'express-serve-static-core' {
  interface Request {
    /** A request id (sky's own answers only): the caller's X-Request-Id when it is sane, else a fresh one. */
    skyRequestId?: string;
  }
}
