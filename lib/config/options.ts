import { z } from 'zod';
import { CONNECTORS, MAIN_TEAM_SETTINGS, type RegisteredConnector } from '../connectors';
import type { Sourced, SourcedFields } from './sources';

/**
 * Programmatic options of sky() (SPEC §3, source 1): the one definition. SkyOptions is this schema's
 * input type; every field is optional (see README "Configuration"). The schema checks each option's
 * shape; values are then checked further with the same rules for every source (env, YAML, options).
 */
const coreSchema = z.object({
  externalUrl: z.string(),
  bindIp: z.string(),
  bindPort: z.number(),
  /** The name the web UI and `/api/v1/info` show (Concourse's CONCOURSE_CLUSTER_NAME). */
  clusterName: z.string(),
  /**
   * Owners of `main` at start (names without the connector prefix, like the variables): a key for
   * each connector's users and one for its groups, as the connector's set-team flags declare them;
   * each is also the variable CONCOURSE_MAIN_TEAM_<flag>.
   */
  mainTeam: z
    .object(Object.fromEntries(MAIN_TEAM_SETTINGS.map((s) => [s.option, z.array(z.string()).optional()])))
    .strict(),
  /** Roles YAML text for `main` (wins over mainTeam). */
  mainTeamConfig: z.string(),
  /** RSA private key PEM. */
  signingKey: z.string(),
  /** Path of an RSA private key PEM. */
  signingKeyFile: z.string(),
  /**
   * Keys that still verify but no longer sign (a rotation, README "Rotating the signing key"): PEM
   * texts, public or private. A private one also opens what the old key sealed (refresh tokens,
   * sessions, Bitbucket tokens), so nobody is logged out.
   */
  previousSigningKeys: z.array(z.string()),
  /** Paths of such keys (SKY_PREVIOUS_SIGNING_KEYS). */
  previousSigningKeyFiles: z.array(z.string()),
  /** Token lifetime: a Go duration ('24h' default, '1.5h', '90m'), or milliseconds. */
  authDuration: z.union([z.string(), z.number()]),
  /** Lifetime of a login's refresh tokens and of the sealed Bitbucket tokens: '720h' (default), or milliseconds. */
  refreshDuration: z.union([z.string(), z.number()]),
  cookieSecure: z.boolean(),
  /** How long a node cut off from Redis still answers from its copies (revocations, team configs): '60s' (default), or milliseconds. */
  outageGrace: z.union([z.string(), z.number()]),
  /** How long a write waits for a Redis replica to confirm it (`WAIT`) when the master has replicas: '2s' (default), or milliseconds; 'off' or 0 never waits. */
  replicaWait: z.union([z.string(), z.number()]),
  /** 'strict' (default): refuse to start on a Redis that may lose sky's keys; 'warn': start anyway and log the risk. */
  redisChecks: z.enum(['strict', 'warn']),
  /** How long the web node lets in-flight requests finish on SIGTERM/SIGINT: '10s' (default), or milliseconds. */
  shutdownGrace: z.union([z.string(), z.number()]),
  /** The oldest a request's Bitbucket groups may be before they are read again: '15m' (default), or milliseconds. */
  groupsMaxAge: z.union([z.string(), z.number()]),
  /** The longest an automation token may live: '8760h' (default, a year), or milliseconds. */
  automationTokenMaxDuration: z.union([z.string(), z.number()]),
  /** How long audit events are kept: '720h' (default, 30 days), or milliseconds. */
  auditRetention: z.union([z.string(), z.number()]),
  /** The most audit events kept (the oldest go first): 100000 by default. */
  auditMaxEvents: z.number(),
  /** Requests a minute per client IP to the login routes, and separately to /sky/token; 0 = no limit. Default 60. */
  rateLimit: z.object({ perMinute: z.number().optional() }).strict(),
  redis: z
    .object({
      /** redis:// or rediss:// URL. */
      url: z.string().optional(),
      /** Extra ioredis options (TLS, …). */
      options: z.record(z.string(), z.unknown()).optional(),
      /** Cluster seed nodes: when set, sky connects with ioredis' Cluster client. */
      cluster: z.array(z.object({ host: z.string(), port: z.number().int() })).optional(),
      /**
       * Redis Sentinel: ioredis asks these for the current master of `name`, and again after a failover
       * (SKY_REDIS_SENTINELS, SKY_REDIS_SENTINEL_NAME).
       */
      sentinel: z
        .object({
          sentinels: z.array(z.object({ host: z.string(), port: z.number().int() })).min(1),
          name: z.string().min(1),
          sentinelPassword: z.string().optional(),
        })
        .strict()
        .optional(),
      /** Password of the Redis servers (for Sentinel and Cluster; a URL carries its own). */
      password: z.string().optional(),
    })
    .strict()
    .nullable(),
  keyPrefix: z.string(),
  audience: z.string(),
  logLevel: z.string(),
  /** Path of a dex-style YAML file (source 3). */
  configFile: z.string(),
  /** The environment to read (default process.env). process.env is not a plain object: only its kind is checked. */
  env: z.custom<Record<string, string | undefined>>(
    (v) => typeof v === 'object' && v !== null,
    'expected an object',
  ),
});

/** Each registered connector's option (`bitbucketCloud`, `localUsers`), its shape the connector's own. */
type ConnectorOptions = { [M in RegisteredConnector as M['settings']['key']]: M['settings']['schema'] };
const connectorOptions = Object.fromEntries(
  CONNECTORS.map((c) => [c.settings.key, c.settings.schema]),
) as ConnectorOptions;

export const optionsSchema = coreSchema.extend(connectorOptions).partial().strict();

export type SkyOptions = z.input<typeof optionsSchema>;
/** The options that belong to a connector. */
export type ConnectorKey = keyof ConnectorOptions;

export type { Sourced } from './sources';

/** Options from all sources merged, each value remembering its source. */
export type Layered = {
  [K in keyof Omit<SkyOptions, 'env' | ConnectorKey>]?: Sourced<NonNullable<SkyOptions[K]>>;
} & {
  /** Each connector's fields by its option's key, merged field by field. */
  connectors: Record<string, SourcedFields>;
  /** Main team roles YAML from a file (CONCOURSE_MAIN_TEAM_CONFIG). */
  mainTeamConfigFile?: Sourced<string>;
  /** dex `redirectURI`, checked against the callback URL. */
  redirectUri?: Sourced<string>;
};
