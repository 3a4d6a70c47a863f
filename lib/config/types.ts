import type { RegisteredConnector } from '../connectors';
import type { SkyOptions } from './options';
import type { TeamAuth } from '../teams/auth';

/** How sky reaches Redis: one definition, the `redis` option's (lib/config/options.ts). */
export type RedisConfig = NonNullable<SkyOptions['redis']>;

/** Each registered connector's resolved settings, under its option's key (null: the connector is off). */
export type ConnectorConfigs = {
  [M in RegisteredConnector as M['settings']['key']]: NonNullable<
    ReturnType<M['settings']['resolve']>
  > | null;
};

/** The resolved, validated configuration: what `resolveConfig()` returns and every part of sky reads. */
export type Config = CoreConfig & ConnectorConfigs;

/** sky's own settings. */
export type CoreConfig = {
  /** Public URL of the web node, normalised without a trailing slash (path kept). */
  externalUrl: string;
  /** Path part of externalUrl: "" for the root, "/ci" for https://host/ci. */
  mountPath: string;
  bindIp: string;
  bindPort: number;
  /** CONCOURSE_CLUSTER_NAME: shown by `/api/v1/info` and the pages ("" when unset). */
  clusterName: string;
  /** Owners (or roles, from CONCOURSE_MAIN_TEAM_CONFIG) of team `main`; null when none is set. */
  mainTeam: TeamAuth | null;
  /** RSA private key PEM (≥ 2048 bits) read from the file or given inline; null = generate at start. */
  signingKeyPem: string | null;
  /** Keys that verify but no longer sign (SKY_PREVIOUS_SIGNING_KEYS), PEM texts, public or private. */
  previousKeyPems: { pem: string; source: string }[];
  /** Token lifetime in milliseconds. */
  authDurationMs: number;
  /** Absolute lifetime of a login's refresh tokens (and of the browser session) in milliseconds. */
  refreshDurationMs: number;
  cookieSecure: boolean;
  /** How long a node cut off from Redis still answers from its copies before it says 503. */
  outageGraceMs: number;
  /** SKY_REDIS_REPLICA_WAIT: how long a write waits for one replica's confirmation; 0 = never waits. */
  replicaWaitMs: number;
  /** SKY_REDIS_CHECKS: what an unsafe Redis (no persistence, an evicting policy) does at start. */
  redisChecks: 'strict' | 'warn';
  /** SKY_SHUTDOWN_GRACE: how long in-flight requests may take once SIGTERM or SIGINT arrives. */
  shutdownGraceMs: number;
  /** SKY_GROUPS_MAX_AGE: the oldest groups a request acts on before sky reads them again (SPEC §5.3). */
  groupsMaxAgeMs: number;
  /** SKY_AUTOMATION_TOKEN_MAX_DURATION: the longest an automation token may live. */
  automationTokenMaxDurationMs: number;
  /** SKY_AUDIT_RETENTION: how long audit events are kept. */
  auditRetentionMs: number;
  /** SKY_AUDIT_MAX_EVENTS: the most audit events kept. */
  auditMaxEvents: number;
  /** Requests a minute per client IP to the login routes, and to /sky/token (0 = no limit). */
  rateLimitPerMinute: number;
  /** null = in-memory embedded default. */
  redis: RedisConfig | null;
  /** Prefix of every Redis key and channel (default "sky:"). */
  keyPrefix: string;
  /** JWT audience (default "sky"). */
  audience: string;
  /** pino level (default "info"). */
  logLevel: string;
};
