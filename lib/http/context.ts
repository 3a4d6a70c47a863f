import type { Config } from '../config/types';
import type { Identity } from '../connector';
import type { Logger } from '../log';
import type { RateLimitRecords } from '../store';
import type { TeamStore } from '../teams/store';
import type { Revocations } from '../tokens/revocations';
import type { SkyClaims, TokenVerifier } from '../tokens';
import type { Grants, IssuedRefresh } from '../tokens/grants';

/** A signed token and, when a refresh family was started or rotated for it, the client's refresh token. */
export interface Issued {
  token: string;
  claims: SkyClaims;
  refreshToken?: string;
}

/** What the sky() router puts on every request it sees, so the guards can work on the host's routes. */
export interface SkyContext {
  config: Config;
  verifier: TokenVerifier;
  revocations: Revocations;
  teams: TeamStore;
  grants: Grants;
  /** Per-client request counters (the login and token limits). */
  limits: RateLimitRecords;
  log: Logger;
  /**
   * Issues a token for a person from their CURRENT teams (`not_in_any_team` when they have none); the
   * grant, when given, is started or rotated only once the person is known to have a team.
   */
  issue(identity: Identity, grant?: () => Promise<IssuedRefresh>): Promise<Issued>;
}

/** Where sky's cookies live: the mount path, Secure per the setting (SPEC §7.2). */
export function cookieAttributes(config: Pick<Config, 'mountPath' | 'cookieSecure'>): {
  path: string;
  secure: boolean;
} {
  return { path: config.mountPath || '/', secure: config.cookieSecure };
}

declare module 'express-serve-static-core' {
  interface Request {
    /** Set by the sky() router. */
    sky?: SkyContext;
    /** The verified token of this request, set by the guards. */
    skyToken?: SkyClaims;
    /** A request id: the caller's X-Request-Id when it is sane, else a fresh one. */
    skyRequestId?: string;
  }
}
