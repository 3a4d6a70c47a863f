/**
 * The one place that builds Redis keys and channel names (STYLE: nothing outside store/ builds a key).
 * Keys that one command or script touches together share a Cluster hash tag: every team key lives
 * under `{teams}`, so the atomic team write (config + index sets) and the SUNION of a login stay in
 * one slot.
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

  /** Hash: subject → "not before" (epoch seconds): tokens of that user issued earlier are refused. */
  get revokedUsers(): string {
    return `${this.prefix}revoked:users`;
  }

  /** Prefix of express-session records (connect-redis adds the session id). */
  get sessionPrefix(): string {
    return `${this.prefix}sess:`;
  }

  /** The pub/sub channel on which every node hears team changes and revocations. */
  get events(): string {
    return `${this.prefix}events`;
  }
}
