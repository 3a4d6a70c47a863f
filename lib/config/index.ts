import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SkyError } from '../errors';
import { CONNECTORS, MAIN_TEAM_SETTINGS, settingsOf } from '../connectors';
import { parseRolesYaml, teamAuthFromFlags, type TeamAuth } from '../teams/auth';
import { applyDexYaml } from './dex';
import { applyEnv } from './env';
import { optionsSchema, settingsSchema, variableOf, type Layered, type SkyOptions } from './options';
import { parseSourced, withoutSlash, type Sourced } from './sources';
import type { Config, ConnectorConfigs, CoreConfig } from './types';

export type { SkyOptions } from './options';
export type { Config, RedisConfig } from './types';

function invalid(problems: string[]): SkyError {
  return new SkyError('invalid_config', `invalid sky configuration: ${problems.join('; ')}`);
}

function fromOptions(options: SkyOptions): Layered {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    throw invalid(parsed.error.issues.map((i) => `option ${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const layered: Layered = { connectors: {} };
  const target = layered as Record<string, unknown>;
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || key === 'env') continue;
    const module = CONNECTORS.find((c) => c.settings.key === key);
    // The value as given (not as parsed: defaults are not set in code, and must not beat other sources).
    if (module) layered.connectors[key] = module.settings.fromOption(value);
    else target[key] = { value, source: `option ${key}` };
  }
  return layered;
}

/**
 * Code beats the environment (express-openid-connect's rule, SPEC §3): what the options set replaces
 * what the environment and the YAML said, setting by setting. Settings that are one choice made in two
 * ways go together: an option's key (inline or file) or main team (owners or roles YAML) replaces both
 * forms from the other sources.
 */
function overlay(layered: Layered, fromCode: Layered): void {
  const target = layered as Record<string, unknown>;
  if (fromCode.signingKey || fromCode.signingKeyFile) {
    delete layered.signingKey;
    delete layered.signingKeyFile;
  }
  if (fromCode.previousSigningKeys || fromCode.previousSigningKeyFiles) {
    delete layered.previousSigningKeys;
    delete layered.previousSigningKeyFiles;
  }
  if (fromCode.mainTeam || fromCode.mainTeamConfig) {
    delete layered.mainTeam;
    delete layered.mainTeamConfig;
    delete layered.mainTeamConfigFile;
  }
  for (const [key, value] of Object.entries(fromCode)) {
    if (key !== 'connectors' && value !== undefined) target[key] = value;
  }
  for (const [key, fields] of Object.entries(fromCode.connectors)) {
    layered.connectors[key] = { ...layered.connectors[key], ...fields };
  }
}

/** A file's text, or null with a problem that names the setting, the path and why (and `hint` for a missing file). */
function readFile(s: Sourced<string>, problems: string[], hint?: string): string | null {
  try {
    return readFileSync(s.value, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? `ENOENT (no such file)${hint ? `: ${hint}` : ''}`
        : (code ?? (err as Error).message);
    problems.push(`${s.source}: cannot read '${s.value}': ${why}`);
    return null;
  }
}

/** How to make a signing key, for the messages that find none. */
const MAKE_KEY = (file: string): string =>
  `make one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out ${file}`;

/** An RSA key of at least 2048 bits: private (a signing key), or public too when `allowPublic` (a previous key). */
function checkRsaKey(pem: string, source: string, problems: string[], allowPublic = false): void {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    try {
      if (!allowPublic) throw new Error('private only');
      key = createPublicKey(pem);
    } catch {
      problems.push(`${source}: not a PEM ${allowPublic ? 'public or private' : 'private'} key`);
      return;
    }
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType !== 'rsa')
    problems.push(
      `${source}: must be an RSA ${allowPublic ? '' : 'private '}key, not ${key.asymmetricKeyType ?? 'unknown'}`,
    );
  else if (bits < 2048) problems.push(`${source}: RSA key has ${bits} bits; at least 2048 are needed`);
}

/**
 * env (CONCOURSE_*) → dex YAML → options, later sources overriding earlier ones field by field (SPEC §3:
 * in the library code beats the environment; the web node sets no options, so there env < YAML);
 * validated once; one error that names every bad setting.
 */
export function resolveConfig(options: SkyOptions = {}): Config {
  const env = options.env ?? process.env;
  const fromCode = fromOptions(options);
  const layered: Layered = { connectors: {} };
  applyEnv(layered, env);
  const configFile = fromCode.configFile ?? layered.configFile;
  if (configFile) applyDexYaml(layered, configFile.value, env);
  overlay(layered, fromCode);

  const problems: string[] = [];
  // sky's own settings, checked by the options schema with their defaults; a problem names its source.
  const { connectors: connectorFields, mainTeamConfigFile, redirectUri, ...own } = layered;
  const settings = parseSourced(settingsSchema, own, problems, variableOf);

  // Each connector checks its own settings; null is a connector that is off.
  const connectors = Object.fromEntries(
    CONNECTORS.map((m) => [
      m.settings.key,
      m.settings.resolve(connectorFields[m.settings.key] ?? {}, problems),
    ]),
  ) as ConnectorConfigs;

  let mainTeam: TeamAuth | null = null;
  const rolesYaml = mainTeamConfigFile
    ? { value: readFile(mainTeamConfigFile, problems), source: mainTeamConfigFile.source }
    : layered.mainTeamConfig;
  try {
    if (rolesYaml?.value) mainTeam = parseRolesYaml(rolesYaml.value);
    else if (layered.mainTeam) {
      const owners = layered.mainTeam.value;
      const entries: Record<string, { users: string[]; groups: string[] }> = {};
      for (const { module, kind, option } of MAIN_TEAM_SETTINGS) {
        const names = owners[option] ?? [];
        if (names.length === 0) continue;
        const entry = (entries[module.id] ??= { users: [], groups: [] });
        entry[kind].push(...names);
      }
      if (Object.keys(entries).length > 0) mainTeam = teamAuthFromFlags(entries);
    }
  } catch (err) {
    problems.push(`${rolesYaml?.source ?? layered.mainTeam?.source}: ${(err as Error).message}`);
  }

  let signingKeyPem: string | null = layered.signingKey?.value ?? null;
  if (layered.signingKeyFile) {
    signingKeyPem = readFile(layered.signingKeyFile, problems, MAKE_KEY(layered.signingKeyFile.value));
  }
  const keySource = layered.signingKeyFile
    ? `${layered.signingKeyFile.source} (${layered.signingKeyFile.value})`
    : 'option signingKey';
  if (signingKeyPem !== null) checkRsaKey(signingKeyPem, keySource, problems);
  const previousKeyPems: Config['previousKeyPems'] = [];
  layered.previousSigningKeys?.value.forEach((pem, i) => {
    previousKeyPems.push({ pem, source: `${layered.previousSigningKeys?.source}[${i}]` });
  });
  for (const file of layered.previousSigningKeyFiles?.value ?? []) {
    const source = `${layered.previousSigningKeyFiles?.source} (${file})`;
    const pem = readFile({ value: file, source: layered.previousSigningKeyFiles?.source ?? '' }, problems);
    if (pem !== null) previousKeyPems.push({ pem, source });
  }
  for (const { pem, source } of previousKeyPems) checkRsaKey(pem, source, problems, true);

  if (settings) {
    const callback = callbackUrl({ externalUrl: withoutSlash(settings.externalUrl) });
    if (redirectUri && redirectUri.value !== callback) {
      problems.push(
        `dex connector redirectURI '${redirectUri.value}' does not match the callback URL '${callback}' (external URL + /sky/issuer/callback)`,
      );
    }
  }
  if (problems.length > 0 || settings === null) throw invalid(problems);

  const externalUrl = withoutSlash(settings.externalUrl);
  const core: CoreConfig = {
    externalUrl,
    mountPath: settings.externalUrl.pathname.replace(/\/+$/, ''),
    bindIp: settings.bindIp,
    bindPort: settings.bindPort,
    clusterName: settings.clusterName,
    mainTeam,
    signingKeyPem,
    previousKeyPems,
    authDurationMs: settings.authDuration,
    refreshDurationMs: settings.refreshDuration,
    cookieSecure: settings.cookieSecure,
    outageGraceMs: settings.outageGrace,
    replicaWaitMs: settings.replicaWait,
    redisChecks: settings.redisChecks,
    shutdownGraceMs: settings.shutdownGrace,
    groupsMaxAgeMs: settings.groupsMaxAge,
    automationTokenMaxDurationMs: settings.automationTokenMaxDuration,
    auditRetentionMs: settings.auditRetention,
    auditMaxEvents: settings.auditMaxEvents,
    rateLimitPerMinute: settings.rateLimit.perMinute,
    redis: settings.redis ?? null,
    keyPrefix: settings.keyPrefix,
    audience: settings.audience,
    logLevel: settings.logLevel,
  };
  return { ...core, ...connectors };
}

export function callbackUrl(config: Pick<Config, 'externalUrl'>): string {
  return `${config.externalUrl}/sky/issuer/callback`;
}

/** What a node needs before it can serve logins; the messages name the settings to set. */
export function requireReady(config: Config): asserts config is Config & { mainTeam: TeamAuth } {
  const problems: string[] = [];
  if (!CONNECTORS.some((m) => settingsOf(config, m) !== null)) {
    problems.push(`no connector: set ${CONNECTORS.map((m) => m.settings.howToEnable).join(', or ')}`);
  }
  if (!config.mainTeam) {
    const variables = [...MAIN_TEAM_SETTINGS.map((s) => s.env), 'CONCOURSE_MAIN_TEAM_CONFIG'];
    problems.push(
      `no main team: set ${variables.slice(0, -1).join(', ')} or ${variables.at(-1)} (option mainTeam)`,
    );
  }
  if (problems.length > 0) throw invalid(problems);
}

/**
 * Start-up warnings, one line each, only those that matter (SPEC §2, §3). Against the bundled fake
 * (`fake`) the node is a demonstration: its one warning is the web node's own, so the localhost URL,
 * the in-memory store and the generated key are not repeated.
 */
export function configWarnings(config: Config, { fake = false } = {}): string[] {
  if (fake) return [];
  const warnings: string[] = [];
  const url = new URL(config.externalUrl);
  const local = url.hostname === 'localhost' || url.hostname.startsWith('127.') || url.hostname === '[::1]';
  const redirecting = CONNECTORS.filter((m) => m.login === 'redirect' && settingsOf(config, m) !== null);
  if (local && redirecting.length > 0) {
    warnings.push(
      `the external URL is on localhost: ${redirecting.map((m) => m.displayName).join(' and ')} must be able to redirect browsers here: ${callbackUrl(config)}`,
    );
  } else if (!local && url.protocol === 'http:' && !config.cookieSecure) {
    warnings.push(
      `the external URL ${config.externalUrl} is http: login cookies are sent without Secure and tokens travel in clear; use an https CONCOURSE_EXTERNAL_URL (behind TLS) in production`,
    );
  }
  if (!config.redis)
    warnings.push(
      'no REDIS_URL: sessions, teams and revocations are kept in process memory (one node only, lost at restart)',
    );
  if (!config.signingKeyPem) {
    warnings.push(
      'no CONCOURSE_SESSION_SIGNING_KEY: a key was generated at start; several nodes need one shared key, and tokens die at restart',
    );
  }
  return warnings;
}
