import { z } from 'zod';
import type { ConnectorSettings } from '../connector';
import {
  httpUrl,
  optionFields,
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

/**
 * sky()'s `bitbucketCloud` option: the one definition of its shape. Not strict: a resolved config (the
 * fake's `connectorConfig()`, with its `id`) is accepted as the option, its extra keys dropped.
 */
const schema = z.object({
  clientId: z.string(),
  clientSecret: z.string(),
  /** What the login page calls it (dex's connector `name`). */
  name: z.string().optional(),
  webUrl: z.string().optional(),
  apiUrl: z.string().optional(),
  /** Workspaces allowed to log in (dex's `teams`); unset: anyone with a Bitbucket account. */
  teams: z.array(z.string()).optional(),
  includeTeamGroups: z.boolean().optional(),
  getWorkspacePermissions: z.boolean().optional(),
  timeoutMs: z.number().int().min(100).max(120_000).optional(),
  retries: z.number().int().min(0).max(5).optional(),
  concurrency: z.number().int().min(1).max(32).optional(),
});

type Option = z.output<typeof schema>;
/** The option's fields, each remembering its source (the option, a variable, a YAML path). */
export type BitbucketFields = { [K in keyof Option]?: Sourced<NonNullable<Option[K]>> | undefined };

const ENV = 'CONCOURSE_BITBUCKET_CLOUD_';

/**
 * How Bitbucket Cloud is configured: Concourse's CONCOURSE_BITBUCKET_CLOUD_* variables, dex's
 * `bitbucket-cloud` connector, or the `bitbucketCloud` option. Credentials turn it on.
 */
export const bitbucketSettings: ConnectorSettings<
  'bitbucketCloud',
  typeof schema,
  BitbucketFields,
  BitbucketCloudConfig
> = {
  key: 'bitbucketCloud',
  schema,
  howToEnable: `${ENV}CLIENT_ID and ${ENV}CLIENT_SECRET (option bitbucketCloud)`,
  fromOption: (value) => optionFields(value, 'bitbucketCloud'),
  fromEnv: (env: EnvSource) => ({
    clientId: env.string(`${ENV}CLIENT_ID`),
    clientSecret: env.string(`${ENV}CLIENT_SECRET`),
    teams: env.list(`${ENV}TEAMS`),
    includeTeamGroups: env.boolean(`${ENV}INCLUDE_TEAM_GROUPS`),
    getWorkspacePermissions: env.boolean(`${ENV}WORKSPACE_PERMISSIONS`),
    webUrl: env.string(`${ENV}WEB_URL`),
    apiUrl: env.string(`${ENV}API_URL`),
  }),
  dex: {
    type: BITBUCKET_CLOUD,
    // dex's bitbucket-cloud connector: clientID, clientSecret, teams, includeTeamGroups,
    // getWorkspacePermissions (redirectURI is checked for every connector by config/).
    fromConnector: (entry: DexConnectorSource) => ({
      clientId: entry.string('clientID'),
      clientSecret: entry.string('clientSecret'),
      name: entry.name(),
      teams: entry.list('teams'),
      includeTeamGroups: entry.boolean('includeTeamGroups'),
      getWorkspacePermissions: entry.boolean('getWorkspacePermissions'),
    }),
  },
  resolve(fields, problems) {
    const { clientId, clientSecret } = fields;
    if (!clientId && !clientSecret) return null;
    if (!clientId)
      problems.push(
        `${ENV}CLIENT_ID (option bitbucketCloud.clientId) is missing while the client secret is set`,
      );
    if (!clientSecret)
      problems.push(
        `${ENV}CLIENT_SECRET (option bitbucketCloud.clientSecret) is missing while the client id is set`,
      );
    const webUrl = httpUrl(
      fields.webUrl ?? { value: 'https://bitbucket.org', source: `${ENV}WEB_URL` },
      problems,
      true,
    );
    const apiUrl = httpUrl(
      fields.apiUrl ?? { value: 'https://api.bitbucket.org', source: `${ENV}API_URL` },
      problems,
      true,
    );
    if (!clientId || !clientSecret || !webUrl || !apiUrl) return null;
    return {
      id: BITBUCKET_CLOUD,
      name: fields.name?.value ?? 'Bitbucket Cloud',
      clientId: clientId.value,
      clientSecret: clientSecret.value,
      webUrl: withoutSlash(webUrl),
      apiUrl: withoutSlash(apiUrl),
      teams: [
        ...new Set((fields.teams?.value ?? []).map((t) => t.trim().toLowerCase()).filter((t) => t !== '')),
      ],
      includeTeamGroups: fields.includeTeamGroups?.value ?? false,
      getWorkspacePermissions: fields.getWorkspacePermissions?.value ?? false,
      timeoutMs: fields.timeoutMs?.value ?? 10_000,
      retries: fields.retries?.value ?? 2,
      concurrency: fields.concurrency?.value ?? 8,
    };
  },
};
