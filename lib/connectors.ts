/**
 * The connectors sky knows, in the order the login page lists them. Adding one is a folder under lib/
 * implementing ConnectorModule (lib/connector.ts) and one line in REGISTERED.
 */
import { bitbucketCloud } from './bitbucket/connector';
import type { Connector, ConnectorDeps, ConnectorModule } from './connector';
import { localUsers } from './local/connector';

const REGISTERED = [bitbucketCloud, localUsers] as const;

/** The registered modules, each with its own types (the options schema and Config are built from them). */
export type RegisteredConnector = (typeof REGISTERED)[number];

export const CONNECTORS: readonly ConnectorModule[] = REGISTERED;

/** The connector an entry without a prefix belongs to (fly's `--bitbucket-cloud-user bob` is `bitbucket-cloud:bob`). */
export const DEFAULT_CONNECTOR: ConnectorModule = bitbucketCloud;

/** The module whose id is `id`, if sky knows one. */
export function connectorModule(id: string): ConnectorModule | undefined {
  return CONNECTORS.find((c) => c.id === id);
}

/** The module a prefixed entry or subject (`<id>:…`) belongs to, and the rest after the prefix. */
export function splitPrefixed(value: string): { module: ConnectorModule; bare: string } | null {
  for (const module of CONNECTORS) {
    if (value.startsWith(`${module.id}:`)) return { module, bare: value.slice(module.id.length + 1) };
  }
  return null;
}

/** One way of naming owners of `main` at start: a connector's users or groups, by option and variable. */
export interface MainTeamSetting {
  module: ConnectorModule;
  kind: 'users' | 'groups';
  /** The key of sky()'s `mainTeam` option. */
  option: string;
  /** Concourse's variable: CONCOURSE_MAIN_TEAM_ + the set-team flag. */
  env: string;
}

export const MAIN_TEAM_SETTINGS: readonly MainTeamSetting[] = CONNECTORS.flatMap((module) => {
  const { userFlag, groupFlag } = module.entries;
  const setting = (kind: 'users' | 'groups', flag: typeof userFlag): MainTeamSetting => ({
    module,
    kind,
    option: flag.mainTeam,
    env: `CONCOURSE_MAIN_TEAM_${flag.name.toUpperCase().replace(/-/g, '_')}`,
  });
  return [setting('users', userFlag), ...(groupFlag ? [setting('groups', groupFlag)] : [])];
});

/** A connector's resolved settings in a Config (null: not configured). */
export function settingsOf(config: Readonly<Record<string, unknown>>, module: ConnectorModule): unknown {
  return config[module.settings.key] ?? null;
}

/** The connectors sky's config enables, each with its runtime part. */
export function enabledConnectors(
  config: Readonly<Record<string, unknown>>,
  deps: ConnectorDeps,
): Connector[] {
  return CONNECTORS.flatMap((module) => {
    const settings = settingsOf(config, module);
    return settings === null ? [] : [{ ...module, ...module.create(deps, settings) }];
  });
}

/**
 * Warnings about team main's user entries at start: an entry of a connector this node does not enable,
 * or a user a password connector does not have (a typo in CONCOURSE_MAIN_TEAM_LOCAL_USER leaves the
 * node without the admin it was meant to have, and nothing else would say so).
 */
export function mainTeamWarnings(users: readonly string[], enabled: readonly Connector[]): string[] {
  const warnings: string[] = [];
  for (const entry of users) {
    const split = splitPrefixed(entry);
    if (!split) continue;
    const { module, bare } = split;
    const setting = MAIN_TEAM_SETTINGS.find((s) => s.module === module && s.kind === 'users');
    const source = setting ? ` (mainTeam.${setting.option} / ${setting.env})` : '';
    const named = `team main names ${module.displayName} '${bare}'${source}`;
    const connector = enabled.find((c) => c.id === module.id);
    if (!connector) warnings.push(`${named}, but this node does not offer logins as ${module.displayName}`);
    else if (connector.configuredUser && connector.configuredUser(bare) === null)
      warnings.push(`${named}, who is not configured: nobody can log in as that owner`);
  }
  return warnings;
}
