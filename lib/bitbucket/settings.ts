import { z } from 'zod';
import type { ConnectorSettings } from '../connector';
import {
  httpUrl,
  optionFields,
  parseSourced,
  SETTINGS,
  withoutSlash,
  type DexConnectorSource,
  type EnvSource,
  type Sourced,
} from '../config/sources';
import { BITBUCKET_CLOUD } from './identity';

/** The Bitbucket Cloud connector, resolved (SPEC §3, §5). */
export interface BitbucketCloudConfig {
  /** Connector id used as the prefix of team config entries. Always "bitbucket-cloud". */
  id: 'bitbucket-cloud';
  /** Display name of the connector ("Bitbucket Cloud", or the dex `name`). */
  name: string;
  clientId: string;
  clientSecret: string;
  /** Base of the OAuth endpoints, no trailing slash. Default https://bitbucket.org */
  webUrl: string;
  /** Base of the REST API, no trailing slash. Default https://api.bitbucket.org */
  apiUrl: string;
  /** dex `teams` allow-list (workspace slugs, lower-cased); empty = no allow-list. */
  teams: string[];
  includeTeamGroups: boolean;
  getWorkspacePermissions: boolean;
  /** Per-call timeout in ms (default 10000). */
  timeoutMs: number;
  /** Retries of a call answered 429/5xx (default 2). */
  retries: number;
  /** Bound on concurrent per-workspace calls (default 8). */
  concurrency: number;
}

const ENV = 'CONCOURSE_BITBUCKET_CLOUD_';
/** A credential's message when it is missing: the other one alone is an error. */
const credential = (variable: string, option: string, other: string) =>
  z.string({
    error: (issue) =>
      issue.input === undefined
        ? `${ENV}${variable} (option bitbucketCloud.${option}) is missing while the client ${other} is set`
        : 'must be a string',
  });

/** A base URL (no trailing slash), checked, with its default and its variable. */
const baseUrl = (defaultUrl: string, variable: string) =>
  z
    .string()
    .default(defaultUrl)
    .transform(httpUrl(true))
    .transform(withoutSlash)
    .register(SETTINGS, { env: `${ENV}${variable}` });

/**
 * sky()'s `bitbucketCloud` option: the one definition of its shape, defaults and checks, and of the
 * variables and dex keys each field comes from. Not strict: a resolved config (the fake's
 * `connectorConfig()`, with its `id`) is accepted as the option, its extra keys dropped.
 */
const shape = {
  clientId: credential('CLIENT_ID', 'clientId', 'secret').register(SETTINGS, {
    env: `${ENV}CLIENT_ID`,
    dex: 'clientID',
  }),
  clientSecret: credential('CLIENT_SECRET', 'clientSecret', 'id').register(SETTINGS, {
    env: `${ENV}CLIENT_SECRET`,
    dex: 'clientSecret',
  }),
  /** What the login page calls it (dex's connector `name`). */
  name: z.string().default('Bitbucket Cloud').register(SETTINGS, { dex: 'name', dexEntry: true }),
  /** Base of the OAuth endpoints. */
  webUrl: baseUrl('https://bitbucket.org', 'WEB_URL'),
  /** Base of the REST API. */
  apiUrl: baseUrl('https://api.bitbucket.org', 'API_URL'),
  /** Workspaces allowed to log in (dex's `teams`), lower-cased; empty: anyone with a Bitbucket account. */
  teams: z
    .array(z.string())
    .default([])
    .transform((teams) => [...new Set(teams.map((t) => t.trim().toLowerCase()).filter((t) => t !== ''))])
    .register(SETTINGS, { env: `${ENV}TEAMS`, dex: 'teams', read: 'list' }),
  includeTeamGroups: z
    .boolean()
    .default(false)
    .register(SETTINGS, { env: `${ENV}INCLUDE_TEAM_GROUPS`, dex: 'includeTeamGroups', read: 'boolean' }),
  getWorkspacePermissions: z
    .boolean()
    .default(false)
    .register(SETTINGS, {
      env: `${ENV}WORKSPACE_PERMISSIONS`,
      dex: 'getWorkspacePermissions',
      read: 'boolean',
    }),
  /** Per-call timeout in ms. */
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  /** Retries of a call answered 429/5xx. */
  retries: z.number().int().min(0).max(5).default(2),
  /** Bound on concurrent per-workspace calls. */
  concurrency: z.number().int().min(1).max(32).default(8),
};
const schema = z.object(shape);

type Option = z.input<typeof schema>;
/** The option's fields, each remembering its source (the option, a variable, a YAML path). */
export type BitbucketFields = { [K in keyof Option]?: Sourced<NonNullable<Option[K]>> | undefined };

/**
 * How Bitbucket Cloud is configured: Concourse's CONCOURSE_BITBUCKET_CLOUD_* variables, dex's
 * `bitbucket-cloud` connector, or the `bitbucketCloud` option. Credentials turn it on.
 */
export const bitbucketSettings: ConnectorSettings<
  'bitbucketCloud',
  ReturnType<typeof schema.partial>,
  BitbucketFields,
  BitbucketCloudConfig
> = {
  key: 'bitbucketCloud',
  // In code every field may be left to the environment or the YAML (the credentials too); resolve()
  // checks the merged whole with `schema`.
  schema: schema.partial(),
  howToEnable: `${ENV}CLIENT_ID and ${ENV}CLIENT_SECRET (option bitbucketCloud)`,
  fromOption: (value) => optionFields(value, 'bitbucketCloud'),
  fromEnv: (env: EnvSource) => env.fields(shape),
  // dex's bitbucket-cloud connector (redirectURI is checked for every connector by config/).
  dex: { type: BITBUCKET_CLOUD, fromConnector: (entry: DexConnectorSource) => entry.fields(shape) },
  resolve(fields, problems) {
    if (!fields.clientId && !fields.clientSecret) return null;
    const parsed = parseSourced(schema, fields, problems);
    return parsed && { id: BITBUCKET_CLOUD, ...parsed };
  },
};
