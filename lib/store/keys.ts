import { createHash } from 'node:crypto';

/**
 * The one place that builds Redis keys and channel names (STYLE: nothing outside store/ builds a key).
 * Keys that one command or script touches together share a Cluster hash tag: every team key lives
 * under `{teams}`, so the atomic team write (config + index sets) and the SUNION of a login stay in
 * one slot; a user's grant keys live under `{u:<hash of the subject>}` (a subject holds braces itself).
 */
export class Keys {
  constructor(readonly prefix: string) {
    if (/[{}\s]/.test(prefix)) throw new Error(`key prefix '${prefix}' must not contain braces or spaces`);
  }

  /** Hash: team name → JSON TeamAuth. */
  get teamConfigs(): string {
    return `${this.prefix}{teams}:configs`;
  }

  /** Hash: team name → JSON Principals the config names (what its index entries are). */
  get teamPrincipals(): string {
    return `${this.prefix}{teams}:principals`;
  }

  /** Set of team names whose config names this user principal (e.g. "bitbucket-cloud:alice"). */
  userIndex(principal: string): string {
    return `${this.prefix}{teams}:idx:u:${principal}`;
  }

  /** Set of team names whose config names this group principal. */
  groupIndex(principal: string): string {
    return `${this.prefix}{teams}:idx:g:${principal}`;
  }

  /** Sorted set: revoked token id → expiry (epoch ms), so expired entries can be trimmed. */
  get revokedTokens(): string {
    return `${this.prefix}revoked:tokens`;
  }

  /** Sorted set: ended login family id (a JWT's `sid`) → until when its tokens must be refused (epoch ms). */
  get revokedFamilies(): string {
    return `${this.prefix}revoked:families`;
  }

  /** Hash: subject → "not before" (epoch seconds): tokens of that user issued earlier are refused. */
  get revokedUsers(): string {
    return `${this.prefix}revoked:users`;
  }

  /** The hash tag of one user's grant keys. */
  private user(sub: string): string {
    return `${this.prefix}{u:${createHash('sha256').update(sub).digest('base64url').slice(0, 22)}}`;
  }

  /** String: the user's sealed upstream (Bitbucket) tokens. */
  userUpstream(sub: string): string {
    return `${this.user(sub)}:upstream`;
  }

  /** Set: the user's live refresh-token family ids. */
  userFamilies(sub: string): string {
    return `${this.user(sub)}:families`;
  }

  /** Set: the user's browser session ids, destroyed when the user's grant is revoked. */
  userSessions(sub: string): string {
    return `${this.user(sub)}:sessions`;
  }

  /** String: JSON {groups, readAt}, the user's groups as last read upstream. */
  userGroups(sub: string): string {
    return `${this.user(sub)}:groups`;
  }

  /** String: the lease of the node refreshing the user's upstream tokens (one at a time). */
  userLock(sub: string): string {
    return `${this.user(sub)}:lock`;
  }

  /** Hash {sub, hash}: one refresh-token family and the hash of its one current token. */
  refreshFamily(familyId: string): string {
    return `${this.prefix}rt:${familyId}`;
  }

  /** Counter of one client's requests in the current window (the bucket names the routes and the client). */
  rateLimit(bucket: string): string {
    return `${this.prefix}rl:${bucket}`;
  }

  /** String with a TTL: one single-use value (an authorization code, a spent login state). */
  singleUse(id: string): string {
    return `${this.prefix}once:${id}`;
  }

  /** Hash: automation token id (the HMAC of its secret) → JSON record. All token keys share `{at}`. */
  get automationTokens(): string {
    return `${this.prefix}{at}:tokens`;
  }

  /** Hash: one team's automation token names → ids. */
  teamAutomationTokens(team: string): string {
    return `${this.prefix}{at}:team:${team}`;
  }

  /** Set: the teams that have automation tokens. */
  get automationTokenTeams(): string {
    return `${this.prefix}{at}:teams`;
  }

  /** Hash: automation token id → its last use (epoch ms), written in batches. */
  get automationTokenUses(): string {
    return `${this.prefix}{at}:used`;
  }

  /** Stream: the audit trail, under a hash tag of its own. */
  get audit(): string {
    return `${this.prefix}{audit}:events`;
  }

  /** Prefix of express-session records (connect-redis adds the session id). */
  get sessionPrefix(): string {
    return `${this.prefix}sess:`;
  }

  /** Hash: kind of data lost (teams, revocations) → the mark of the last loss a node reported. */
  get losses(): string {
    return `${this.prefix}losses`;
  }

  /** The pub/sub channel on which every node hears team changes and revocations. */
  get events(): string {
    return `${this.prefix}events`;
  }
}
