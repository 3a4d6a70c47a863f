/** Programmatic options of sky() (SPEC §3, source 1). Every field is optional; see README "Configuration". */
export interface SkyOptions {
  externalUrl?: string;
  bindIp?: string;
  bindPort?: number;
  bitbucketCloud?: {
    clientId: string;
    clientSecret: string;
    name?: string;
    webUrl?: string;
    apiUrl?: string;
    teams?: string[];
    includeTeamGroups?: boolean;
    getWorkspacePermissions?: boolean;
    timeoutMs?: number;
    retries?: number;
    concurrency?: number;
  };
  /** Owners of `main` (names without the connector prefix, like the env variables). */
  mainTeam?: { users?: string[]; groups?: string[] };
  /** Roles YAML text for `main` (wins over mainTeam). */
  mainTeamConfig?: string;
  /** RSA private key PEM. */
  signingKey?: string;
  /** Path of an RSA private key PEM. */
  signingKeyFile?: string;
  /** '24h', '90m', '1h30m', '45s', or milliseconds. */
  authDuration?: string | number;
  /** Lifetime of a login's refresh tokens and of the sealed Bitbucket tokens: '720h' (default), or ms. */
  refreshDuration?: string | number;
  cookieSecure?: boolean;
  /** How long a node cut off from Redis still answers from its copies (revocations, team configs): '30s' (default). */
  outageGrace?: string | number;
  /** The oldest a request's Bitbucket groups may be before they are read again: '15m' (default), or ms. */
  groupsMaxAge?: string | number;
  /** Requests a minute per client IP to the login routes, and separately to /sky/token; 0 = no limit. Default 60. */
  rateLimit?: { perMinute?: number };
  redis?: {
    url?: string;
    options?: Record<string, unknown>;
    cluster?: { host: string; port: number }[];
  } | null;
  keyPrefix?: string;
  audience?: string;
  logLevel?: string;
  /** Path of a dex-style YAML file (source 3). */
  configFile?: string;
  /** The environment to read (default process.env). */
  env?: Record<string, string | undefined>;
}

/** One setting's value and where it came from, so an error can name the option, variable or YAML path. */
export interface Sourced<T> {
  value: T;
  source: string;
}

/** Options from all sources merged, each value remembering its source. */
export type Layered = {
  [K in keyof Omit<SkyOptions, 'env' | 'bitbucketCloud'>]?: Sourced<NonNullable<SkyOptions[K]>>;
} & {
  bitbucket: {
    [K in keyof NonNullable<SkyOptions['bitbucketCloud']>]?: Sourced<
      NonNullable<NonNullable<SkyOptions['bitbucketCloud']>[K]>
    >;
  };
  /** Main team roles YAML from a file (CONCOURSE_MAIN_TEAM_CONFIG). */
  mainTeamConfigFile?: Sourced<string>;
  /** dex `redirectURI`, checked against the callback URL. */
  redirectUri?: Sourced<string>;
};
