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
  /**
   * Owners of `main` (names without the connector prefix, like the env variables): Bitbucket Cloud
   * users and workspaces, and local users (CONCOURSE_MAIN_TEAM_LOCAL_USER).
   */
  mainTeam?: { users?: string[]; groups?: string[]; localUsers?: string[] };
  /** Local users, Concourse's CONCOURSE_ADD_LOCAL_USER: `name:password` or `name:$2a$…` (bcrypt) each. */
  localUsers?: string[];
  /** Roles YAML text for `main` (wins over mainTeam). */
  mainTeamConfig?: string;
  /** RSA private key PEM. */
  signingKey?: string;
  /** Path of an RSA private key PEM. */
  signingKeyFile?: string;
  /** Token lifetime: a Go duration ('24h' default, '1.5h', '90m'), or milliseconds. */
  authDuration?: string | number;
  /** Lifetime of a login's refresh tokens and of the sealed Bitbucket tokens: '720h' (default), or milliseconds. */
  refreshDuration?: string | number;
  cookieSecure?: boolean;
  /** How long a node cut off from Redis still answers from its copies (revocations, team configs): '60s' (default), or milliseconds. */
  outageGrace?: string | number;
  /** How long a write waits for a Redis replica to confirm it (`WAIT`) when the master has replicas: '2s' (default), or milliseconds; 'off' or 0 never waits. */
  replicaWait?: string | number;
  /** 'strict' (default): refuse to start on a Redis that may lose sky's keys; 'warn': start anyway and log the risk. */
  redisChecks?: 'strict' | 'warn';
  /** How long the web node lets in-flight requests finish on SIGTERM/SIGINT: '10s' (default), or milliseconds. */
  shutdownGrace?: string | number;
  /** The oldest a request's Bitbucket groups may be before they are read again: '15m' (default), or milliseconds. */
  groupsMaxAge?: string | number;
  /** Requests a minute per client IP to the login routes, and separately to /sky/token; 0 = no limit. Default 60. */
  rateLimit?: { perMinute?: number };
  redis?: {
    url?: string;
    options?: Record<string, unknown>;
    cluster?: { host: string; port: number }[];
    /** Redis Sentinel: the sentinels and the master's name (SKY_REDIS_SENTINELS, SKY_REDIS_SENTINEL_NAME). */
    sentinel?: { sentinels: { host: string; port: number }[]; name: string; sentinelPassword?: string };
    /** Password of the Redis servers themselves (REDIS_URL may carry it instead). */
    password?: string;
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
