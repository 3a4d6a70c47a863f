import { SkyError } from '../errors';
import type { Layered, Sourced } from './options';

const list = (value: string): string[] =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');

export function parseBoolean(value: string, source: string): boolean {
  const v = value.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw new SkyError(
    'invalid_config',
    `${source}: '${value.slice(0, 40)}' is not a boolean (use true or false)`,
  );
}

/** `host:port` of a Redis Cluster seed node; IPv6 hosts in brackets. */
function hostPort(value: string, source: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || !(port >= 1 && port <= 65535)) {
    throw new SkyError('invalid_config', `${source}: '${value.slice(0, 80)}' is not host:port`);
  }
  return { host: (match[1] as string).replace(/^\[|\]$/g, ''), port };
}

/** SPEC §3 source 2: Concourse's CONCOURSE_* names (empty values count as unset). */
export function applyEnv(layered: Layered, env: Record<string, string | undefined>): void {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v;
  };
  const str = (name: string, set: (value: { value: string; source: string }) => void): void => {
    const v = get(name);
    if (v !== undefined) set({ value: v.trim(), source: name });
  };
  const bb = layered.bitbucket;
  str('CONCOURSE_EXTERNAL_URL', (v) => (layered.externalUrl = v));
  str('CONCOURSE_BIND_IP', (v) => (layered.bindIp = v));
  str('CONCOURSE_CLUSTER_NAME', (v) => (layered.clusterName = v));
  str('CONCOURSE_BIND_PORT', (v) => (layered.bindPort = { value: Number(v.value), source: v.source }));
  str('CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID', (v) => (bb.clientId = v));
  str('CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET', (v) => (bb.clientSecret = v));
  str('CONCOURSE_BITBUCKET_CLOUD_TEAMS', (v) => (bb.teams = { value: list(v.value), source: v.source }));
  str('CONCOURSE_BITBUCKET_CLOUD_INCLUDE_TEAM_GROUPS', (v) => {
    bb.includeTeamGroups = { value: parseBoolean(v.value, v.source), source: v.source };
  });
  str('CONCOURSE_BITBUCKET_CLOUD_WORKSPACE_PERMISSIONS', (v) => {
    bb.getWorkspacePermissions = { value: parseBoolean(v.value, v.source), source: v.source };
  });
  str('CONCOURSE_BITBUCKET_CLOUD_WEB_URL', (v) => (bb.webUrl = v));
  str('CONCOURSE_BITBUCKET_CLOUD_API_URL', (v) => (bb.apiUrl = v));
  const users = get('CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER');
  const groups = get('CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_TEAM');
  const localUsers = get('CONCOURSE_MAIN_TEAM_LOCAL_USER');
  if (users !== undefined || groups !== undefined || localUsers !== undefined) {
    layered.mainTeam = {
      value: { users: list(users ?? ''), groups: list(groups ?? ''), localUsers: list(localUsers ?? '') },
      source: 'CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER/_TEAM/CONCOURSE_MAIN_TEAM_LOCAL_USER',
    };
  }
  // Concourse's form: name:password or name:bcrypt-hash, comma-separated (the value is never logged).
  str('CONCOURSE_ADD_LOCAL_USER', (v) => (layered.localUsers = { value: list(v.value), source: v.source }));
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
  str('CONCOURSE_AUTH_DURATION', (v) => (layered.authDuration = v));
  str('SKY_REFRESH_DURATION', (v) => (layered.refreshDuration = v));
  str('SKY_OUTAGE_GRACE', (v) => (layered.outageGrace = v));
  str('SKY_GROUPS_MAX_AGE', (v) => (layered.groupsMaxAge = v));
  str('SKY_AUTOMATION_TOKEN_MAX_DURATION', (v) => (layered.automationTokenMaxDuration = v));
  str('SKY_AUDIT_RETENTION', (v) => (layered.auditRetention = v));
  str('SKY_AUDIT_MAX_EVENTS', (v) => (layered.auditMaxEvents = { value: Number(v.value), source: v.source }));
  str('SKY_RATE_LIMIT_PER_MINUTE', (v) => {
    layered.rateLimit = { value: { perMinute: Number(v.value) }, source: v.source };
  });
  str(
    'CONCOURSE_COOKIE_SECURE',
    (v) => (layered.cookieSecure = { value: parseBoolean(v.value, v.source), source: v.source }),
  );
  str('REDIS_URL', (v) => (layered.redis = { value: { url: v.value }, source: v.source }));
  str('SKY_REDIS_CLUSTER', (v) => {
    layered.redis = { value: { cluster: list(v.value).map((n) => hostPort(n, v.source)) }, source: v.source };
  });
  const sentinels = get('SKY_REDIS_SENTINELS');
  const sentinelName = get('SKY_REDIS_SENTINEL_NAME');
  if (sentinels !== undefined || sentinelName !== undefined) {
    if (sentinels === undefined || sentinelName === undefined) {
      throw new SkyError(
        'invalid_config',
        `invalid sky configuration: ${sentinels === undefined ? 'SKY_REDIS_SENTINELS' : 'SKY_REDIS_SENTINEL_NAME'} is missing while ${sentinels === undefined ? 'SKY_REDIS_SENTINEL_NAME' : 'SKY_REDIS_SENTINELS'} is set (Sentinel needs both)`,
      );
    }
    const sentinelPassword = get('SKY_REDIS_SENTINEL_PASSWORD');
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
  const password = get('SKY_REDIS_PASSWORD');
  if (password !== undefined && layered.redis) {
    layered.redis = { ...layered.redis, value: { ...layered.redis.value, password } };
  }
  str('SKY_REDIS_REPLICA_WAIT', (v) => (layered.replicaWait = v));
  str('SKY_REDIS_CHECKS', (v) => (layered.redisChecks = v as Sourced<'strict' | 'warn'>));
  str('SKY_SHUTDOWN_GRACE', (v) => (layered.shutdownGrace = v));
  str('SKY_KEY_PREFIX', (v) => (layered.keyPrefix = v));
  str('LOG_LEVEL', (v) => (layered.logLevel = v));
  str('SKY_CONFIG', (v) => (layered.configFile = v));
}
