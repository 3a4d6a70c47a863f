import { CONNECTORS, MAIN_TEAM_SETTINGS } from '../connectors';
import { SkyError } from '../errors';
import { CORE_SHAPE, type Layered } from './options';
import { EnvSource, list, type Sourced } from './sources';

/** `host:port` of a Redis Cluster seed node; IPv6 hosts in brackets. */
function hostPort(value: string, source: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || !(port >= 1 && port <= 65535)) {
    throw new SkyError('invalid_config', `${source}: '${value.slice(0, 80)}' is not host:port`);
  }
  return { host: (match[1] as string).replace(/^\[|\]$/g, ''), port };
}

/**
 * SPEC §3 source 2: Concourse's CONCOURSE_* names (empty values count as unset). sky's settings of one
 * variable each come from the options schema's registrations; those made of several (Redis, the main
 * team, the key files) are read here; each connector reads its own (`settings.fromEnv`), and main team's
 * owners come from the variables of the connectors' set-team flags.
 */
export function applyEnv(layered: Layered, environment: Record<string, string | undefined>): void {
  const env = new EnvSource(environment);
  const str = (name: string, set: (value: Sourced<string>) => void): void => {
    const v = env.string(name);
    if (v !== undefined) set(v);
  };
  // The settings that are one variable each, as the options schema registers them.
  const target = layered as Record<string, unknown>;
  for (const [field, value] of Object.entries(env.fields(CORE_SHAPE))) {
    if (value !== undefined) target[field] = value;
  }
  for (const module of CONNECTORS) {
    layered.connectors[module.settings.key] = module.settings.fromEnv(env);
  }
  const owners = MAIN_TEAM_SETTINGS.flatMap((s) => {
    const v = env.list(s.env);
    return v ? [{ ...v, option: s.option }] : [];
  });
  if (owners.length > 0) {
    layered.mainTeam = {
      value: Object.fromEntries(owners.map((o) => [o.option, o.value])),
      source: owners.map((o) => o.source).join(', '),
    };
  }
  str('CONCOURSE_MAIN_TEAM_CONFIG', (v) => {
    layered.mainTeamConfigFile = v;
    delete layered.mainTeamConfig;
  });
  str('CONCOURSE_SESSION_SIGNING_KEY', (v) => {
    layered.signingKeyFile = v;
    delete layered.signingKey;
  });
  str('SKY_PREVIOUS_SIGNING_KEYS', (v) => {
    layered.previousSigningKeyFiles = { value: list(v.value), source: v.source };
    delete layered.previousSigningKeys;
  });
  str('SKY_RATE_LIMIT_PER_MINUTE', (v) => {
    layered.rateLimit = { value: { perMinute: Number(v.value) }, source: v.source };
  });
  str('REDIS_URL', (v) => (layered.redis = { value: { url: v.value }, source: v.source }));
  str('SKY_REDIS_CLUSTER', (v) => {
    layered.redis = { value: { cluster: list(v.value).map((n) => hostPort(n, v.source)) }, source: v.source };
  });
  const sentinels = env.raw('SKY_REDIS_SENTINELS');
  const sentinelName = env.raw('SKY_REDIS_SENTINEL_NAME');
  if (sentinels !== undefined || sentinelName !== undefined) {
    if (sentinels === undefined || sentinelName === undefined) {
      throw new SkyError(
        'invalid_config',
        `invalid sky configuration: ${sentinels === undefined ? 'SKY_REDIS_SENTINELS' : 'SKY_REDIS_SENTINEL_NAME'} is missing while ${sentinels === undefined ? 'SKY_REDIS_SENTINEL_NAME' : 'SKY_REDIS_SENTINELS'} is set (Sentinel needs both)`,
      );
    }
    const sentinelPassword = env.raw('SKY_REDIS_SENTINEL_PASSWORD');
    layered.redis = {
      value: {
        sentinel: {
          sentinels: list(sentinels).map((n) => hostPort(n, 'SKY_REDIS_SENTINELS')),
          name: sentinelName.trim(),
          ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
        },
      },
      source: 'SKY_REDIS_SENTINELS',
    };
  }
  const password = env.raw('SKY_REDIS_PASSWORD');
  if (password !== undefined && layered.redis) {
    layered.redis = { ...layered.redis, value: { ...layered.redis.value, password } };
  }
}
