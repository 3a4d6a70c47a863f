/**
 * The narrow interface between sky and an identity provider. Everything Bitbucket-specific lives in
 * lib/bitbucket behind it; a second provider would be a sibling folder implementing the same shape.
 */

/** Who a person is, as the connector established it at login or refresh (SPEC §5.2). */
export interface Identity {
  /** Connector id, e.g. "bitbucket-cloud". */
  connector: string;
  /** Stable upstream id (Bitbucket: the braced uuid, lower-cased). */
  userId: string;
  /** Bitbucket account_id. */
  accountId: string;
  /** Login name when the provider gives one (Bitbucket `username`, deprecated, may be absent). */
  userName?: string;
  /** Display name. */
  name: string;
  /** Confirmed email only; absent when none is confirmed. */
  email?: string;
  /** Group names as they appear in team configs without the connector prefix: "acme", "acme/devs", "acme:owner". */
  groups: string[];
}

/** Tokens of the upstream provider, as sky keeps them (encrypted) for refresh. */
export interface UpstreamTokens {
  accessToken: string;
  refreshToken?: string;
  /** Epoch milliseconds when the access token expires. */
  expiresAt: number;
  scopes: string[];
}

export interface AuthorizeParams {
  state: string;
  codeChallenge: string;
  redirectUri: string;
}

/**
 * What sky needs of a provider after login, to refresh (SPEC §8). A refresh whose grant the provider
 * revoked rejects with SkyError code `upstream_revoked`.
 */
export interface Connector {
  /** Connector id, the prefix of team config entries ("bitbucket-cloud"). */
  readonly id: string;
  /** Redeems the upstream refresh token; providers that rotate return the new one. */
  refresh(refreshToken: string): Promise<UpstreamTokens>;
  /** Who the access token's owner is now, with their current groups. */
  identity(accessToken: string): Promise<Identity>;
}
