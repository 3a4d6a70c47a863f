import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configWarnings, requireReady, resolveConfig, type SkyOptions } from '../../lib/config';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-config-'));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}
const rsa = (bits: number): string =>
  generateKeyPairSync('rsa', { modulusLength: bits })
    .privateKey.export({ format: 'pem', type: 'pkcs8' })
    .toString();

const creds = {
  CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID: 'id',
  CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET: 'secret',
};
const resolveEnv = (env: Record<string, string>, options: SkyOptions = {}) =>
  resolveConfig({ ...options, env });

test('defaults (SPEC §3)', () => {
  const c = resolveEnv({});
  expect(c).toMatchObject({
    externalUrl: 'http://localhost:8080',
    mountPath: '',
    bindIp: '0.0.0.0',
    bindPort: 8080,
    bitbucketCloud: null,
    mainTeam: null,
    signingKeyPem: null,
    authDurationMs: 24 * 3600_000,
    cookieSecure: false,
    redis: null,
    keyPrefix: 'sky:',
    audience: 'sky',
  });
  expect(configWarnings(resolveEnv(creds)).join('\n')).toMatch(
    /Bitbucket Cloud must be able to redirect browsers here.*in process memory.*shared key/s,
  );
  // Only local users: nothing redirects, so a localhost URL is no problem.
  expect(
    configWarnings(resolveEnv({ CONCOURSE_ADD_LOCAL_USER: 'admin:$2a$04$' + 'a'.repeat(53) })),
  ).not.toContainEqual(expect.stringContaining('redirect'));
});

test('every CONCOURSE_* variable', () => {
  const key = file('key.pem', rsa(2048));
  const c = resolveEnv({
    ...creds,
    CONCOURSE_EXTERNAL_URL: 'https://ci.example.com/ci/',
    CONCOURSE_BIND_IP: '127.0.0.1',
    CONCOURSE_BIND_PORT: '9090',
    CONCOURSE_BITBUCKET_CLOUD_TEAMS: 'Acme, widgets,,',
    CONCOURSE_BITBUCKET_CLOUD_INCLUDE_TEAM_GROUPS: 'true',
    CONCOURSE_BITBUCKET_CLOUD_WORKSPACE_PERMISSIONS: '1',
    CONCOURSE_BITBUCKET_CLOUD_WEB_URL: 'http://127.0.0.1:1234/',
    CONCOURSE_BITBUCKET_CLOUD_API_URL: 'http://127.0.0.1:1235',
    CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice,bob',
    CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_TEAM: 'acme',
    CONCOURSE_SESSION_SIGNING_KEY: key,
    CONCOURSE_AUTH_DURATION: '1h30m',
    CONCOURSE_COOKIE_SECURE: 'false',
    REDIS_URL: 'redis://127.0.0.1:6390',
  });
  expect(c).toMatchObject({
    externalUrl: 'https://ci.example.com/ci',
    mountPath: '/ci',
    bindIp: '127.0.0.1',
    bindPort: 9090,
    authDurationMs: 90 * 60_000,
    cookieSecure: false,
    redis: { url: 'redis://127.0.0.1:6390' },
    mainTeam: {
      owner: { users: ['bitbucket-cloud:alice', 'bitbucket-cloud:bob'], groups: ['bitbucket-cloud:acme'] },
    },
    bitbucketCloud: {
      clientId: 'id',
      clientSecret: 'secret',
      teams: ['acme', 'widgets'],
      includeTeamGroups: true,
      getWorkspacePermissions: true,
      webUrl: 'http://127.0.0.1:1234',
      apiUrl: 'http://127.0.0.1:1235',
    },
  });
  expect(c.signingKeyPem).toContain('PRIVATE KEY');
  expect(resolveEnv({ CONCOURSE_EXTERNAL_URL: 'https://ci.example.com' }).cookieSecure).toBe(true);
});

test('CONCOURSE_MAIN_TEAM_CONFIG is a roles YAML file and wins over the user/team variables', () => {
  const roles = file(
    'main.yml',
    'roles:\n- name: owner\n  bitbucket-cloud:\n    users: [carol]\n- name: viewer\n  bitbucket-cloud:\n    teams: [acme]\n',
  );
  const c = resolveEnv({
    CONCOURSE_MAIN_TEAM_CONFIG: roles,
    CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice',
  });
  expect(c.mainTeam).toEqual({
    owner: { users: ['bitbucket-cloud:carol'], groups: [] },
    viewer: { users: [], groups: ['bitbucket-cloud:acme'] },
  });
});

test('precedence: env < dex YAML < options (in the library, code beats the environment)', () => {
  const dex = file(
    'dex.yaml',
    'issuer: https://dex.example.com\nconnectors:\n- type: bitbucket-cloud\n  id: bitbucket-cloud\n  name: Bitbucket\n  config:\n    clientID: $MY_ID\n    clientSecret: yaml-secret\n    redirectURI: https://ci.example.com/sky/issuer/callback\n    teams: [yaml-team]\n    includeTeamGroups: true\n',
  );
  const env = {
    CONCOURSE_EXTERNAL_URL: 'https://ci.example.com',
    CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET: 'env-secret',
    CONCOURSE_AUTH_DURATION: '1h',
    SKY_CONFIG: dex,
    MY_ID: 'env-id',
  };
  // The web node: no options, so the YAML wins over the environment.
  expect(resolveConfig({ env }).bitbucketCloud).toMatchObject({
    clientId: 'env-id',
    clientSecret: 'yaml-secret',
    teams: ['yaml-team'],
    includeTeamGroups: true,
    name: 'Bitbucket',
  });
  // The library: an option set in code wins over the same setting from the environment and the YAML.
  const c = resolveConfig({
    externalUrl: 'https://ci.example.com',
    bitbucketCloud: { clientId: 'option-id', clientSecret: 'option-secret', teams: ['option-team'] },
    audience: 'option-aud',
    authDuration: '2h',
    env,
  });
  expect(c.audience).toBe('option-aud');
  expect(c.authDurationMs).toBe(2 * 3600_000);
  expect(c.bitbucketCloud).toMatchObject({
    clientId: 'option-id',
    clientSecret: 'option-secret',
    teams: ['option-team'],
    // What the options leave unset still comes from the other sources.
    includeTeamGroups: true,
    name: 'Bitbucket',
  });
  // An error names where the bad value came from: the option, or the variable.
  expect(() => resolveConfig({ authDuration: '1d', env })).toThrow(
    "option authDuration: invalid duration '1d'",
  );
  expect(() => resolveConfig({ env: { ...env, CONCOURSE_AUTH_DURATION: '1d' } })).toThrow(
    "CONCOURSE_AUTH_DURATION: invalid duration '1d'",
  );
  // One choice made two ways: a key given in code replaces the variable's key file (which would fail).
  const keyEnv = { ...env, CONCOURSE_SESSION_SIGNING_KEY: '/nonexistent/key.pem' };
  expect(() => resolveConfig({ env: keyEnv })).toThrow('/nonexistent/key.pem');
  const pem = rsa(2048);
  expect(resolveConfig({ signingKey: pem, env: keyEnv }).signingKeyPem).toBe(pem);
});

test('a dex YAML whose redirectURI does not match fails with both URLs', () => {
  const dex = file(
    'bad.yaml',
    'connectors:\n- type: bitbucket-cloud\n  id: bb\n  config:\n    clientID: a\n    clientSecret: b\n    redirectURI: https://dex.example.com/callback\n',
  );
  expect(() => resolveEnv({ SKY_CONFIG: dex, CONCOURSE_EXTERNAL_URL: 'https://ci.example.com/ci' })).toThrow(
    "dex connector redirectURI 'https://dex.example.com/callback' does not match the callback URL 'https://ci.example.com/ci/sky/issuer/callback'",
  );
});

test.each<[string, Record<string, string>, string]>([
  [
    'external URL not a URL',
    { CONCOURSE_EXTERNAL_URL: 'ci.example.com' },
    "CONCOURSE_EXTERNAL_URL: 'ci.example.com' is not an absolute URL",
  ],
  [
    'external URL ftp',
    { CONCOURSE_EXTERNAL_URL: 'ftp://x' },
    'CONCOURSE_EXTERNAL_URL: must be an http or https URL',
  ],
  [
    'external URL with query',
    { CONCOURSE_EXTERNAL_URL: 'https://x/?a=1' },
    'CONCOURSE_EXTERNAL_URL: must not carry',
  ],
  ['bind port', { CONCOURSE_BIND_PORT: '70000' }, 'CONCOURSE_BIND_PORT: must be an integer port'],
  ['bind port text', { CONCOURSE_BIND_PORT: 'http' }, 'CONCOURSE_BIND_PORT: must be an integer port'],
  [
    'boolean',
    { ...creds, CONCOURSE_BITBUCKET_CLOUD_INCLUDE_TEAM_GROUPS: 'maybe' },
    "CONCOURSE_BITBUCKET_CLOUD_INCLUDE_TEAM_GROUPS: 'maybe' is not a boolean",
  ],
  [
    'duration',
    { CONCOURSE_AUTH_DURATION: '1 day' },
    "CONCOURSE_AUTH_DURATION: invalid duration '1 day' (use e.g. 24h, 90m)",
  ],
  [
    'duration too long',
    { CONCOURSE_AUTH_DURATION: '1000h' },
    'CONCOURSE_AUTH_DURATION: duration must be more than 0 and at most 720h',
  ],
  ['redis URL', { REDIS_URL: 'http://redis' }, 'REDIS_URL: must be a redis:// or rediss:// URL'],
  [
    'client id without secret',
    { CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID: 'id' },
    'CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET (option bitbucketCloud.clientSecret) is missing',
  ],
  [
    'web URL',
    { ...creds, CONCOURSE_BITBUCKET_CLOUD_WEB_URL: 'nope' },
    "CONCOURSE_BITBUCKET_CLOUD_WEB_URL: 'nope' is not an absolute URL",
  ],
  [
    'main team config missing',
    { CONCOURSE_MAIN_TEAM_CONFIG: '/nonexistent/main.yml' },
    "CONCOURSE_MAIN_TEAM_CONFIG: cannot read '/nonexistent/main.yml': ENOENT",
  ],
  [
    'signing key missing',
    { CONCOURSE_SESSION_SIGNING_KEY: '/nonexistent/key.pem' },
    "CONCOURSE_SESSION_SIGNING_KEY: cannot read '/nonexistent/key.pem'",
  ],
  ['key prefix', { SKY_KEY_PREFIX: 'a{b}' }, 'SKY_KEY_PREFIX: 1-64 characters without spaces or braces'],
  [
    'sentinels without a name',
    { SKY_REDIS_SENTINELS: '127.0.0.1:26379' },
    'SKY_REDIS_SENTINEL_NAME is missing while SKY_REDIS_SENTINELS is set',
  ],
  [
    'a sentinel name without sentinels',
    { SKY_REDIS_SENTINEL_NAME: 'mymaster' },
    'SKY_REDIS_SENTINELS is missing while SKY_REDIS_SENTINEL_NAME is set',
  ],
  [
    'a sentinel that is not host:port',
    { SKY_REDIS_SENTINELS: 'sentinel-a', SKY_REDIS_SENTINEL_NAME: 'm' },
    "SKY_REDIS_SENTINELS: 'sentinel-a' is not host:port",
  ],
  [
    'replica wait',
    { SKY_REDIS_REPLICA_WAIT: 'forever' },
    "SKY_REDIS_REPLICA_WAIT: invalid duration 'forever'",
  ],
  [
    'replica wait too long',
    { SKY_REDIS_REPLICA_WAIT: '5m' },
    'SKY_REDIS_REPLICA_WAIT: duration must be more than 0 and at most 1m',
  ],
  ['redis checks', { SKY_REDIS_CHECKS: 'never' }, "SKY_REDIS_CHECKS: 'never' is not strict or warn"],
  ['shutdown grace', { SKY_SHUTDOWN_GRACE: 'soon' }, "SKY_SHUTDOWN_GRACE: invalid duration 'soon'"],
])('%s → one error naming the setting', (_name, env, message) => {
  expect(() => resolveEnv(env)).toThrow(message);
});

test('durability settings: defaults, Sentinel from the environment, the replica wait off', () => {
  expect(resolveEnv({})).toMatchObject({
    outageGraceMs: 60_000,
    replicaWaitMs: 2_000,
    redisChecks: 'strict',
    shutdownGraceMs: 10_000,
  });
  const c = resolveEnv({
    SKY_REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380',
    SKY_REDIS_SENTINEL_NAME: 'skymaster',
    SKY_REDIS_SENTINEL_PASSWORD: 's3',
    SKY_REDIS_PASSWORD: 'r3',
    SKY_REDIS_REPLICA_WAIT: 'off',
    SKY_REDIS_CHECKS: 'warn',
    SKY_SHUTDOWN_GRACE: '30s',
  });
  expect(c.redis).toEqual({
    sentinel: {
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'skymaster',
      sentinelPassword: 's3',
    },
    password: 'r3',
  });
  expect(c).toMatchObject({ replicaWaitMs: 0, redisChecks: 'warn', shutdownGraceMs: 30_000 });
  expect(resolveEnv({ SKY_REDIS_REPLICA_WAIT: '0' }).replicaWaitMs).toBe(0);
  expect(() =>
    resolveConfig({
      env: {},
      redis: { url: 'redis://a', sentinel: { sentinels: [{ host: 'b', port: 1 }], name: 'm' } },
    }),
  ).toThrow('option redis: choose one of a URL, a Cluster and a Sentinel');
});

test('signing key files: too small, not RSA', () => {
  const small = file('small.pem', rsa(1024));
  const ec = file(
    'ec.pem',
    generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString(),
  );
  expect(() => resolveEnv({ CONCOURSE_SESSION_SIGNING_KEY: small })).toThrow(
    `CONCOURSE_SESSION_SIGNING_KEY (${small}): RSA key has 1024 bits`,
  );
  expect(() => resolveEnv({ CONCOURSE_SESSION_SIGNING_KEY: ec })).toThrow(
    'must be an RSA private key, not ec',
  );
});

test('dex: $NAME from the environment, unset names named; other connector types refused', () => {
  const dex = file(
    'unset.yaml',
    'connectors:\n- type: bitbucket-cloud\n  id: bb\n  config:\n    clientID: $NOT_SET\n    clientSecret: b\n',
  );
  expect(() => resolveEnv({ SKY_CONFIG: dex })).toThrow(
    'connectors[0].config.clientID: environment variable NOT_SET is not set',
  );
  const github = file('gh.yaml', 'connectors:\n- type: github\n  id: gh\n  config: {}\n');
  expect(() => resolveEnv({ SKY_CONFIG: github })).toThrow("connector type 'github' is not supported");
});

test('programmatic options are checked for shape and unknown keys', () => {
  expect(() => resolveConfig({ env: {}, bindPort: '80' as unknown as number })).toThrow('option bindPort');
  expect(() => resolveConfig({ env: {}, ...({ externalURL: 'x' } as object) })).toThrow('option (root)');
});

test('requireReady names the settings for a missing connector and a missing main team', () => {
  expect(() => requireReady(resolveEnv({}))).toThrow(
    /CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID.*CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER/s,
  );
  expect(() => requireReady(resolveEnv(creds))).toThrow(
    'no main team: set CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER',
  );
});

test('process.env itself is accepted as the env option (it is not a plain object)', () => {
  expect(() => resolveConfig({ env: process.env })).not.toThrow(/option env/);
});

describe('connector settings: each connector reads its own, from every source', () => {
  const hash = '$2a$04$' + 'b'.repeat(53);

  test('local users from CONCOURSE_ADD_LOCAL_USER, and a node with only local users is ready', () => {
    const c = resolveEnv({
      CONCOURSE_ADD_LOCAL_USER: `admin:${hash}`,
      CONCOURSE_MAIN_TEAM_LOCAL_USER: 'admin',
    });
    expect(c.bitbucketCloud).toBeNull();
    expect(c.localUsers).toEqual([{ name: 'admin', hash, plainIn: null }]);
    expect(c.mainTeam).toEqual({ owner: { users: ['local:admin'], groups: [] } });
    expect(() => requireReady(c)).not.toThrow();
  });

  test('both connectors own main together, each entry under its prefix', () => {
    const c = resolveEnv({
      ...creds,
      CONCOURSE_ADD_LOCAL_USER: `admin:${hash}`,
      CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice',
      CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_TEAM: 'acme',
      CONCOURSE_MAIN_TEAM_LOCAL_USER: 'admin',
    });
    expect(c.mainTeam).toEqual({
      owner: { users: ['bitbucket-cloud:alice', 'local:admin'], groups: ['bitbucket-cloud:acme'] },
    });
  });

  test('code beats the environment for a connector option too; a bad value names its option', () => {
    const env = { CONCOURSE_ADD_LOCAL_USER: `admin:${hash}`, ...creds };
    const c = resolveConfig({
      env,
      localUsers: [`carol:${hash}`],
      bitbucketCloud: { clientId: 'code', clientSecret: 's' },
    });
    expect(c.localUsers?.map((u) => u.name)).toEqual(['carol']);
    expect(c.bitbucketCloud?.clientId).toBe('code');
    // An entry without a name may be a password alone: it is named by its place, never quoted.
    expect(() => resolveConfig({ env, localUsers: ['carol:x', 'only-a-password'] })).toThrow(
      "option localUsers: entry 2 has no ':'; each entry is name:password (or name:bcrypt-hash)",
    );
    expect(() => resolveEnv({ CONCOURSE_ADD_LOCAL_USER: ':hunter2' })).toThrow(
      "CONCOURSE_ADD_LOCAL_USER: entry 1 has no name before ':'",
    );
    for (const value of [':hunter2', 'hunter2', 'carol:x,hunter2'])
      expect(() => resolveEnv({ CONCOURSE_ADD_LOCAL_USER: value })).not.toThrow(/hunter2/);
    expect(() => resolveEnv({ CONCOURSE_ADD_LOCAL_USER: 'dave:' })).toThrow(
      "CONCOURSE_ADD_LOCAL_USER: local user 'dave' has no password",
    );
    expect(() => resolveEnv({ CONCOURSE_ADD_LOCAL_USER: 'Bad Name:x' })).toThrow(
      "CONCOURSE_ADD_LOCAL_USER: 'bad name' is not a local user name",
    );
    expect(() =>
      resolveConfig({ env: {}, bitbucketCloud: { clientId: 'a', clientSecret: 'b', webUrl: 'x' } }),
    ).toThrow("option bitbucketCloud.webUrl: 'x' is not an absolute URL");
    expect(() => resolveConfig({ env: {}, localUsers: [7] as unknown as string[] })).toThrow(
      'option localUsers.0',
    );
  });

  test('a connector option may set some fields in code and leave the credentials to the environment', () => {
    const env = {
      CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID: 'env-id',
      CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET: 'env-secret',
      CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice',
    };
    expect(resolveConfig({ env, bitbucketCloud: { includeTeamGroups: true } }).bitbucketCloud).toMatchObject({
      clientId: 'env-id',
      clientSecret: 'env-secret',
      includeTeamGroups: true,
    });
    // A credential that no source gives is named once, with the variable and the option that would.
    expect(() =>
      resolveConfig({
        env: { CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice' },
        bitbucketCloud: { clientSecret: 'code-secret' },
      }),
    ).toThrow(
      'invalid sky configuration: CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID (option bitbucketCloud.clientId) is missing while the client secret is set',
    );
  });

  test("dex's staticPasswords are local users (hash, base64 hash or hashFromEnv); errors name the YAML path", () => {
    const dex = file(
      'static.yaml',
      [
        'enablePasswordDB: true',
        'staticPasswords:',
        `- {email: admin@example.com, username: admin, hash: "${hash}", userID: "1"}`,
        `- {username: carol, hash: ${Buffer.from(hash).toString('base64')}}`,
        '- {username: dave, hashFromEnv: DAVE_HASH}',
        'connectors:',
        '- type: bitbucket-cloud',
        '  id: bitbucket-cloud',
        '  config: {clientID: a, clientSecret: b}',
      ].join('\n'),
    );
    const c = resolveEnv({ SKY_CONFIG: dex, DAVE_HASH: hash });
    expect(c.localUsers?.map((u) => [u.name, u.hash])).toEqual([
      ['admin', hash],
      ['carol', hash],
      ['dave', hash],
    ]);
    expect(c.bitbucketCloud?.clientId).toBe('a');
    const off = file('off.yaml', `staticPasswords:\n- {username: admin, hash: "${hash}"}\n`);
    expect(() => resolveEnv({ SKY_CONFIG: off })).toThrow(
      `${off}: staticPasswords is set but enablePasswordDB is not true`,
    );
    const plain = file(
      'plain.yaml',
      'enablePasswordDB: true\nstaticPasswords:\n- {username: admin, hash: hunter2}\n',
    );
    expect(() => resolveEnv({ SKY_CONFIG: plain })).toThrow(
      `${plain}: staticPasswords[0].hash is not a bcrypt hash`,
    );
    const none = file('none.yaml', 'issuer: https://dex.example.com\n');
    expect(() => resolveEnv({ SKY_CONFIG: none })).toThrow('configures no connector');
    const twice = file(
      'twice.yaml',
      'connectors:\n- {type: bitbucket-cloud, config: {clientID: a, clientSecret: b}}\n- {type: bitbucket-cloud, config: {clientID: c, clientSecret: d}}\n',
    );
    expect(() => resolveEnv({ SKY_CONFIG: twice })).toThrow(
      `${twice}: connectors[1]: a second bitbucket-cloud connector`,
    );
  });

  test('requireReady names every connector and every main-team variable', () => {
    expect(() => requireReady(resolveEnv({}))).toThrow(
      'no connector: set CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID and CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET (option bitbucketCloud), or CONCOURSE_ADD_LOCAL_USER (option localUsers)',
    );
    expect(() => requireReady(resolveEnv(creds))).toThrow(
      'no main team: set CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER, CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_TEAM, CONCOURSE_MAIN_TEAM_LOCAL_USER or CONCOURSE_MAIN_TEAM_CONFIG (option mainTeam)',
    );
    expect(() =>
      resolveConfig({ env: {}, mainTeam: { owners: 'x' } as unknown as Record<string, string[]> }),
    ).toThrow('option mainTeam');
  });
});
