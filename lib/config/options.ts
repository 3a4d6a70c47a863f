import { z } from 'zod';
import { CONNECTORS, MAIN_TEAM_SETTINGS, type RegisteredConnector } from '../connectors';
import { durationMs, type DurationRule } from './duration';
import { httpUrl, SETTINGS, type Sourced, type SourcedFields } from './sources';

const HOUR_MS = 3600_000;

/** A text or number setting in Go's duration grammar (or milliseconds in code), checked by its rule. */
const duration = (rule: DurationRule & { defaultMs: number }) =>
  z
    .union([z.string(), z.number()])
    .transform((value, ctx) => {
      const read = durationMs(value, rule);
      if ('ms' in read) return read.ms;
      ctx.addIssue({ code: 'custom', message: read.problem });
      return z.NEVER;
    })
    .default(rule.defaultMs);

/** An integer within bounds, one message for every way of missing them (text, fraction, range). */
const integer = (min: number, max: number, message: string) =>
  z
    .number({ error: message })
    .int({ error: message })
    .min(min, { error: message })
    .max(max, { error: message });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * sky's own options (SPEC §3, source 1), with their defaults and checks, and the variable each comes from
 * (SETTINGS). The same schema checks an option given in code and, after the sources are merged, every
 * value from wherever it came; a problem is named by the value's source.
 */
const coreShape = {
  /** Public URL of the web node (a path allowed); unset, this node on localhost at its port. */
  externalUrl: z
    .string()
    .transform(httpUrl(true))
    .optional()
    .register(SETTINGS, { env: 'CONCOURSE_EXTERNAL_URL' }),
  bindIp: z.string().default('0.0.0.0').register(SETTINGS, { env: 'CONCOURSE_BIND_IP' }),
  bindPort: integer(0, 65535, 'must be an integer port 0-65535')
    .default(8080)
    .register(SETTINGS, { env: 'CONCOURSE_BIND_PORT', read: 'number' }),
  /** The name the web UI and `/api/v1/info` show (Concourse's CONCOURSE_CLUSTER_NAME). */
  clusterName: z.string().default('').register(SETTINGS, { env: 'CONCOURSE_CLUSTER_NAME' }),
  /**
   * Owners of `main` at start (names without the connector prefix, like the variables): a key for
   * each connector's users and one for its groups, as the connector's set-team flags declare them;
   * each is also the variable CONCOURSE_MAIN_TEAM_<flag>.
   */
  mainTeam: z
    .object(Object.fromEntries(MAIN_TEAM_SETTINGS.map((s) => [s.option, z.array(z.string()).optional()])))
    .strict()
    .optional(),
  /** Roles YAML text for `main` (wins over mainTeam; CONCOURSE_MAIN_TEAM_CONFIG names a file of it). */
  mainTeamConfig: z.string().optional(),
  /** RSA private key PEM. */
  signingKey: z.string().optional(),
  /** Path of an RSA private key PEM (CONCOURSE_SESSION_SIGNING_KEY). */
  signingKeyFile: z.string().optional(),
  /**
   * Keys that still verify but no longer sign (a rotation, README "Rotating the signing key"): PEM
   * texts, public or private. A private one also opens what the old key sealed (refresh tokens,
   * sessions, Bitbucket tokens), so nobody is logged out.
   */
  previousSigningKeys: z.array(z.string()).optional(),
  /** Paths of such keys (SKY_PREVIOUS_SIGNING_KEYS). */
  previousSigningKeyFiles: z.array(z.string()).optional(),
  /** Token lifetime: a Go duration ('24h' default, '1.5h', '90m'), or milliseconds. */
  authDuration: duration({ defaultMs: 24 * HOUR_MS, maxMs: 720 * HOUR_MS }).register(SETTINGS, {
    env: 'CONCOURSE_AUTH_DURATION',
  }),
  /** Lifetime of a login's refresh tokens and of the sealed Bitbucket tokens: '720h' (default), or milliseconds. */
  refreshDuration: duration({ defaultMs: 720 * HOUR_MS, maxMs: 2160 * HOUR_MS }).register(SETTINGS, {
    env: 'SKY_REFRESH_DURATION',
  }),
  /** Secure cookies; unset, true for an https external URL. */
  cookieSecure: z
    .boolean()
    .optional()
    .register(SETTINGS, { env: 'CONCOURSE_COOKIE_SECURE', read: 'boolean' }),
  /**
   * How long a node cut off from Redis still answers from its copies (revocations, team configs): '60s'
   * (default), or milliseconds. A Sentinel failover takes its down-after-milliseconds (30 s by default)
   * and a few seconds more.
   */
  outageGrace: duration({ defaultMs: 60_000, maxMs: 10 * 60_000 }).register(SETTINGS, {
    env: 'SKY_OUTAGE_GRACE',
  }),
  /** How long a write waits for a Redis replica to confirm it (`WAIT`) when the master has replicas: '2s' (default), or milliseconds; 'off' or 0 never waits. */
  replicaWait: duration({ defaultMs: 2_000, maxMs: 60_000, off: true }).register(SETTINGS, {
    env: 'SKY_REDIS_REPLICA_WAIT',
  }),
  /** 'strict' (default): refuse to start on a Redis that may lose sky's keys; 'warn': start anyway and log the risk. */
  redisChecks: z
    .enum(['strict', 'warn'], {
      error: (issue) => `'${String(issue.input).slice(0, 20)}' is not strict or warn`,
    })
    .default('strict')
    .register(SETTINGS, { env: 'SKY_REDIS_CHECKS' }),
  /** How long the web node lets in-flight requests finish on SIGTERM/SIGINT: '10s' (default), or milliseconds. */
  shutdownGrace: duration({ defaultMs: 10_000, maxMs: 10 * 60_000 }).register(SETTINGS, {
    env: 'SKY_SHUTDOWN_GRACE',
  }),
  /** The oldest a request's Bitbucket groups may be before they are read again: '15m' (default), or milliseconds. */
  groupsMaxAge: duration({ defaultMs: 15 * 60_000, minMs: 1_000, maxMs: 24 * HOUR_MS }).register(SETTINGS, {
    env: 'SKY_GROUPS_MAX_AGE',
  }),
  /** The longest an automation token may live: '8760h' (default, a year), or milliseconds. */
  automationTokenMaxDuration: duration({
    defaultMs: 8760 * HOUR_MS,
    minMs: 60_000,
    maxMs: 87_600 * HOUR_MS,
  }).register(SETTINGS, { env: 'SKY_AUTOMATION_TOKEN_MAX_DURATION' }),
  /** How long audit events are kept: '720h' (default, 30 days), or milliseconds. */
  auditRetention: duration({ defaultMs: 720 * HOUR_MS, minMs: 60_000, maxMs: 87_600 * HOUR_MS }).register(
    SETTINGS,
    { env: 'SKY_AUDIT_RETENTION' },
  ),
  /** The most audit events kept (the oldest go first): 100000 by default. */
  auditMaxEvents: integer(100, 10_000_000, 'the most audit events kept must be an integer 100-10000000')
    .default(100_000)
    .register(SETTINGS, { env: 'SKY_AUDIT_MAX_EVENTS', read: 'number' }),
  /** Requests a minute per client IP to the login routes, and separately to /sky/token; 0 = no limit. Default 60. */
  rateLimit: z
    .object({
      perMinute: integer(0, 100_000, 'requests a minute must be an integer 0-100000 (0 = no limit)').default(
        60,
      ),
    })
    .strict()
    .default({ perMinute: 60 }),
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
    .superRefine((redis, ctx) => {
      if ([redis.url, redis.cluster, redis.sentinel].filter((v) => v !== undefined).length > 1)
        ctx.addIssue({ code: 'custom', message: 'choose one of a URL, a Cluster and a Sentinel' });
      else if (redis.url !== undefined && !/^rediss?:\/\//.test(redis.url))
        ctx.addIssue({ code: 'custom', message: 'must be a redis:// or rediss:// URL' });
    })
    .nullable()
    .optional(),
  /** Prefix of every Redis key and channel. */
  keyPrefix: z
    .string()
    .regex(/^[^\s{}]{1,64}$/, { error: '1-64 characters without spaces or braces' })
    .default('sky:')
    .register(SETTINGS, { env: 'SKY_KEY_PREFIX' }),
  /** JWT audience. */
  audience: z.string().min(1, { error: 'must not be empty' }).default('sky'),
  /** pino level. */
  logLevel: z
    .enum(LOG_LEVELS, {
      error: (issue) =>
        `unknown log level '${String(issue.input).slice(0, 20)}' (use fatal, error, warn, info, debug, trace or silent)`,
    })
    .default('info')
    .register(SETTINGS, { env: 'LOG_LEVEL' }),
  /** Path of a dex-style YAML file (source 3). */
  configFile: z.string().optional().register(SETTINGS, { env: 'SKY_CONFIG' }),
};

/**
 * sky's own settings merged from every source, checked with their defaults and against each other. The
 * defaults that follow other settings: the external URL is this node on localhost at its own port
 * (Concourse's, with the port followed), and cookies are Secure for an https external URL.
 */
export const settingsSchema = z
  .object(coreShape)
  .superRefine((s, ctx) => {
    if (s.refreshDuration < s.authDuration)
      ctx.addIssue({
        code: 'custom',
        path: ['refreshDuration'],
        message: 'the refresh lifetime must be at least the token lifetime (CONCOURSE_AUTH_DURATION)',
      });
  })
  .transform((s) => {
    const externalUrl = s.externalUrl ?? new URL(`http://localhost:${s.bindPort || 8080}`);
    return { ...s, externalUrl, cookieSecure: s.cookieSecure ?? externalUrl.protocol === 'https:' };
  });

/** sky's own settings, for the readers of their registered variables (SETTINGS). */
export const CORE_SHAPE: z.ZodRawShape = coreShape;

/** The variable a setting of sky's own comes from (for a problem about a value that was not set). */
export function variableOf(field: string): string | undefined {
  const schema = CORE_SHAPE[field];
  return schema && SETTINGS.get(schema)?.env;
}

/**
 * Programmatic options of sky(): sky's own, each connector's (its part of the schema is the
 * connector's own), and `env`. SkyOptions is this schema's input type; every field is optional (see
 * README "Configuration").
 */
const coreSchema = z.object({
  ...coreShape,
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
