import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SkyError } from '../errors';
import { CONNECTORS, MAIN_TEAM_SETTINGS, settingsOf } from '../connectors';
import { parseRolesYaml, teamAuthFromFlags, type TeamAuth } from '../teams/auth';
import { applyDexYaml } from './dex';
import { durationMs, type DurationRule } from './duration';
import { applyEnv } from './env';
import { optionsSchema, type Layered, type SkyOptions } from './options';
import { httpUrl, withoutSlash, type Sourced } from './sources';
import type { Config, ConnectorConfigs, CoreConfig } from './types';

export type { SkyOptions } from './options';
export type { Config, RedisConfig } from './types';

const HOUR_MS = 3600_000;

/** Every duration setting: its default and what it accepts (README, Configuration → Durations). */
const DURATIONS = {
  authDuration: { defaultMs: 24 * HOUR_MS, maxMs: 720 * HOUR_MS },
  refreshDuration: { defaultMs: 720 * HOUR_MS, maxMs: 2160 * HOUR_MS },
  // A Sentinel failover takes its down-after-milliseconds (30 s by default) and a few seconds more.
  outageGrace: { defaultMs: 60_000, maxMs: 10 * 60_000 },
  replicaWait: { defaultMs: 2_000, maxMs: 60_000, off: true },
  shutdownGrace: { defaultMs: 10_000, maxMs: 10 * 60_000 },
  groupsMaxAge: { defaultMs: 15 * 60_000, minMs: 1_000, maxMs: 24 * HOUR_MS },
  automationTokenMaxDuration: { defaultMs: 8760 * HOUR_MS, minMs: 60_000, maxMs: 87_600 * HOUR_MS },
  auditRetention: { defaultMs: 720 * HOUR_MS, minMs: 60_000, maxMs: 87_600 * HOUR_MS },
} satisfies Record<string, DurationRule & { defaultMs: number }>;

function invalid(problems: string[]): SkyError {
  return new SkyError('invalid_config', `invalid sky configuration: ${problems.join('; ')}`);
}

function fromOptions(options: SkyOptions): Layered {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    throw invalid(parsed.error.issues.map((i) => `option ${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const data: Record<string, unknown> = parsed.data;
  const layered: Layered = { connectors: {} };
  const target = layered as Record<string, unknown>;
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || key === 'env') continue;
    const module = CONNECTORS.find((c) => c.settings.key === key);
    if (module) layered.connectors[key] = module.settings.fromOption(data[key]);
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
  const bindPort = layered.bindPort ?? { value: 8080, source: 'CONCOURSE_BIND_PORT' };
  const portOk = Number.isInteger(bindPort.value) && bindPort.value >= 0 && bindPort.value <= 65535;
  if (!portOk) problems.push(`${bindPort.source}: must be an integer port 0-65535`);
  // Unset, the external URL is this node on localhost at its own port (Concourse's default, with the port followed).
  const defaultUrl = `http://localhost:${portOk && bindPort.value !== 0 ? bindPort.value : 8080}`;
  const external = httpUrl(
    layered.externalUrl ?? { value: defaultUrl, source: 'CONCOURSE_EXTERNAL_URL' },
    problems,
    true,
  );
  const externalUrl = external ? withoutSlash(external) : '';
  const mountPath = external ? external.pathname.replace(/\/+$/, '') : '';

  // Each connector checks its own settings; null is a connector that is off.
  const connectors = Object.fromEntries(
    CONNECTORS.map((m) => [
      m.settings.key,
      m.settings.resolve(layered.connectors[m.settings.key] ?? {}, problems),
    ]),
  ) as ConnectorConfigs;

  let mainTeam: TeamAuth | null = null;
  const rolesYaml = layered.mainTeamConfigFile
    ? { value: readFile(layered.mainTeamConfigFile, problems), source: layered.mainTeamConfigFile.source }
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

  /** A duration setting: its default when unset, else read by its rule, a bad value joining the problems. */
  const duration = (name: keyof typeof DURATIONS): number => {
    const setting = layered[name];
    const rule = DURATIONS[name];
    if (!setting) return rule.defaultMs;
    const read = durationMs(setting, rule);
    if ('ms' in read) return read.ms;
    problems.push(read.problem);
    return rule.defaultMs;
  };
  const authDurationMs = duration('authDuration');
  const refreshDurationMs = duration('refreshDuration');
  if (refreshDurationMs < authDurationMs) {
    problems.push(
      `${layered.refreshDuration?.source ?? 'SKY_REFRESH_DURATION'}: the refresh lifetime must be at least the token lifetime (CONCOURSE_AUTH_DURATION)`,
    );
  }
  const outageGraceMs = duration('outageGrace');
  const replicaWaitMs = duration('replicaWait');
  const shutdownGraceMs = duration('shutdownGrace');
  const redisChecks = layered.redisChecks?.value ?? 'strict';
  if (redisChecks !== 'strict' && redisChecks !== 'warn') {
    problems.push(
      `${layered.redisChecks?.source}: '${String(redisChecks).slice(0, 20)}' is not strict or warn`,
    );
  }

  const groupsMaxAgeMs = duration('groupsMaxAge');
  const automationTokenMaxDurationMs = duration('automationTokenMaxDuration');
  const auditRetentionMs = duration('auditRetention');
  const auditMaxEvents = layered.auditMaxEvents?.value ?? 100_000;
  if (!Number.isInteger(auditMaxEvents) || auditMaxEvents < 100 || auditMaxEvents > 10_000_000) {
    problems.push(
      `${layered.auditMaxEvents?.source}: the most audit events kept must be an integer 100-10000000`,
    );
  }

  const rateLimitPerMinute = layered.rateLimit?.value.perMinute ?? 60;
  if (!Number.isInteger(rateLimitPerMinute) || rateLimitPerMinute < 0 || rateLimitPerMinute > 100_000) {
    problems.push(
      `${layered.rateLimit?.source}: requests a minute must be an integer 0-100000 (0 = no limit)`,
    );
  }

  const redis = layered.redis?.value ?? null;
  if (redis && [redis.url, redis.cluster, redis.sentinel].filter((v) => v !== undefined).length > 1)
    problems.push(`${layered.redis?.source}: choose one of a URL, a Cluster and a Sentinel`);
  if (redis?.url && !/^rediss?:\/\//.test(redis.url))
    problems.push(`${layered.redis?.source}: must be a redis:// or rediss:// URL`);

  const keyPrefix = layered.keyPrefix?.value ?? 'sky:';
  if (!/^[^\s{}]{1,64}$/.test(keyPrefix))
    problems.push(`${layered.keyPrefix?.source}: 1-64 characters without spaces or braces`);
  const audience = layered.audience?.value ?? 'sky';
  if (audience === '') problems.push(`${layered.audience?.source}: must not be empty`);
  const logLevel = layered.logLevel?.value ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    problems.push(
      `${layered.logLevel?.source}: unknown log level '${logLevel.slice(0, 20)}' (use fatal, error, warn, info, debug, trace or silent)`,
    );
  }

  const callback = `${externalUrl}/sky/issuer/callback`;
  if (layered.redirectUri && external && layered.redirectUri.value !== callback) {
    problems.push(
      `dex connector redirectURI '${layered.redirectUri.value}' does not match the callback URL '${callback}' (external URL + /sky/issuer/callback)`,
    );
  }
  if (problems.length > 0) throw invalid(problems);

  const core: CoreConfig = {
    externalUrl,
    mountPath,
    bindIp: layered.bindIp?.value ?? '0.0.0.0',
    bindPort: bindPort.value,
    clusterName: layered.clusterName?.value ?? '',
    mainTeam,
    signingKeyPem,
    previousKeyPems,
    authDurationMs,
    refreshDurationMs,
    cookieSecure: layered.cookieSecure?.value ?? externalUrl.startsWith('https:'),
    outageGraceMs,
    replicaWaitMs,
    redisChecks,
    shutdownGraceMs,
    groupsMaxAgeMs,
    automationTokenMaxDurationMs,
    auditRetentionMs,
    auditMaxEvents,
    rateLimitPerMinute,
    redis,
    keyPrefix,
    audience,
    logLevel,
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
