import { readFileSync } from 'node:fs';
import { parseYamlText } from '../yaml';
import { SkyError } from '../errors';
import { parseBoolean } from './env';
import type { Layered } from './options';

const fail = (message: string): never => {
  throw new SkyError('invalid_config', message);
};

/**
 * dex's `expiry:` block, as dex reads it with Go's durations: `idTokens` is the token lifetime (Concourse
 * sets dex's IDTokensValidFor from CONCOURSE_AUTH_DURATION), `refreshTokens.absoluteLifetime` the refresh
 * lifetime; dex's other expiry keys have no counterpart in sky and are ignored like other dex keys.
 */
function applyExpiry(layered: Layered, expiry: unknown, file: string): void {
  if (expiry === undefined || expiry === null) return;
  const mapping = (value: unknown, at: string): Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : fail(`${file}: ${at} must be a mapping`);
  const text = (value: unknown, at: string): string | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') return fail(`${file}: ${at} must be a duration string such as 24h`);
    return value;
  };
  const e = mapping(expiry, 'expiry');
  const idTokens = text(e['idTokens'], 'expiry.idTokens');
  if (idTokens !== undefined) layered.authDuration = { value: idTokens, source: `${file}: expiry.idTokens` };
  if (e['refreshTokens'] === undefined || e['refreshTokens'] === null) return;
  const at = 'expiry.refreshTokens.absoluteLifetime';
  const lifetime = text(mapping(e['refreshTokens'], 'expiry.refreshTokens')['absoluteLifetime'], at);
  if (lifetime !== undefined) layered.refreshDuration = { value: lifetime, source: `${file}: ${at}` };
}

/**
 * SPEC §3 source 3: a dex-style YAML file. The `connectors:` list works as written in dex's docs, and
 * `expiry:` as above; other dex keys are ignored; a connector value `$NAME` is read from the environment.
 */
export function applyDexYaml(layered: Layered, file: string, env: Record<string, string | undefined>): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return fail(`SKY_CONFIG: cannot read '${file}': ${(err as Error).message}`);
  }
  const parsed = parseYamlText(text);
  if ('problem' in parsed) return fail(`SKY_CONFIG: '${file}' is not valid YAML: ${parsed.problem}`);
  const { doc } = parsed;
  const connectors = (doc as { connectors?: unknown } | null)?.connectors;
  if (!Array.isArray(connectors)) return fail(`SKY_CONFIG: '${file}' has no connectors: list`);
  applyExpiry(layered, (doc as { expiry?: unknown }).expiry, file);
  const bitbucket = connectors.filter((c: unknown) => {
    const type = (c as { type?: unknown } | null)?.type;
    if (type !== 'bitbucket-cloud')
      fail(`SKY_CONFIG: connector type '${String(type)}' is not supported (sky speaks bitbucket-cloud)`);
    return true;
  });
  if (bitbucket.length !== 1)
    fail(`SKY_CONFIG: expected exactly one bitbucket-cloud connector, found ${bitbucket.length}`);
  const connector = bitbucket[0] as { name?: unknown; config?: unknown };
  const config = connector.config;
  if (typeof config !== 'object' || config === null)
    return fail(`SKY_CONFIG: connectors[0].config must be a mapping`);
  const c = config as Record<string, unknown>;
  const at = (key: string): string => `${file}: connectors[0].config.${key}`;

  const resolve = (key: string): string | undefined => {
    const raw = c[key];
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw !== 'string') return fail(`${at(key)} must be a string`);
    const ref = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(raw);
    if (!ref) return raw;
    const value = env[ref[1] as string];
    if (value === undefined || value === '')
      return fail(`${at(key)}: environment variable ${ref[1]} is not set`);
    return value;
  };
  const bool = (key: string): boolean | undefined => {
    const raw = c[key];
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw === 'boolean') return raw;
    const value = resolve(key);
    return value === undefined ? undefined : parseBoolean(value, at(key));
  };

  const bb = layered.bitbucket;
  const clientId = resolve('clientID');
  const clientSecret = resolve('clientSecret');
  const redirectUri = resolve('redirectURI');
  if (clientId !== undefined) bb.clientId = { value: clientId, source: at('clientID') };
  if (clientSecret !== undefined) bb.clientSecret = { value: clientSecret, source: at('clientSecret') };
  if (redirectUri !== undefined) layered.redirectUri = { value: redirectUri, source: at('redirectURI') };
  if (typeof connector.name === 'string')
    bb.name = { value: connector.name, source: `${file}: connectors[0].name` };
  const teams = c['teams'];
  if (teams !== undefined && teams !== null) {
    if (!Array.isArray(teams) || !teams.every((t) => typeof t === 'string'))
      fail(`${at('teams')} must be a list of strings`);
    bb.teams = { value: teams as string[], source: at('teams') };
  }
  const includeTeamGroups = bool('includeTeamGroups');
  if (includeTeamGroups !== undefined)
    bb.includeTeamGroups = { value: includeTeamGroups, source: at('includeTeamGroups') };
  const permissions = bool('getWorkspacePermissions');
  if (permissions !== undefined)
    bb.getWorkspacePermissions = { value: permissions, source: at('getWorkspacePermissions') };
}
