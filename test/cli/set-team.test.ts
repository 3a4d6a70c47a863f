import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { startNode, type TestNode } from '../harness/node';
import { loginByPaste, sky, tempSkyrc } from './cli';

/** `sky set-team` (SPEC §9): fly's display, prompt, validation and messages, against the real API. */
let fake: FakeBitbucket;
let node: TestNode;
let skyrc: string; // target "ci" as alice (admin), target "bob" as bob (owner of builders only)
let aliceJwt: string;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  await node.putTeam('builders', { owner: { users: ['bob'] } });
  skyrc = tempSkyrc();
  aliceJwt = await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
  await loginByPaste(skyrc, 'bob', node.url, fake, 'bob', 'builders');
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

/** The team as the server holds it (null when missing), read with alice's token. */
async function serverTeam(team: string): Promise<unknown> {
  const res = await fetch(`${node.url}/api/v1/teams/${team}`, {
    headers: { authorization: `Bearer ${aliceJwt}` },
  });
  if (res.status === 404) return null;
  expect(res.status).toBe(200);
  return ((await res.json()) as { auth: unknown }).auth;
}

function rolesFile(text: string): string {
  const file = path.join(path.dirname(skyrc), `roles-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(file, text);
  return file;
}

describe('with flags', () => {
  test('--non-interactive: every user and team becomes an owner; "team created", then "team updated"', async () => {
    const argv = [
      '-t',
      'ci',
      'set-team',
      '-n',
      'flags-team',
      '--bitbucket-cloud-user',
      'Bob',
      '--bitbucket-cloud-user',
      'carol',
      '--bitbucket-cloud-team',
      'acme',
      '--non-interactive',
    ];
    const created = await sky(skyrc, argv);
    expect(created).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'setting team: flags-team\n' +
        '\n' +
        'role owner:\n' +
        '  users:\n' +
        '  - bitbucket-cloud:bob\n' +
        '  - bitbucket-cloud:carol\n' +
        '\n' +
        '  groups:\n' +
        '  - bitbucket-cloud:acme\n' +
        '\n' +
        'new team\n' +
        'team created\n',
    });
    expect(await serverTeam('flags-team')).toEqual({
      owner: { users: ['bitbucket-cloud:bob', 'bitbucket-cloud:carol'], groups: ['bitbucket-cloud:acme'] },
    });

    const updated = await sky(skyrc, [
      '-t',
      'ci',
      'st',
      '-n',
      'flags-team',
      '--bitbucket-cloud-user',
      'dave',
      '--non-interactive',
    ]);
    expect(updated.code).toBe(0);
    expect(updated.stdout).toContain(
      '  groups:\n    none\n' +
        '\nchanges:\n\nrole owner:\n' +
        '- bitbucket-cloud user bob\n- bitbucket-cloud user carol\n- bitbucket-cloud team acme\n' +
        '+ bitbucket-cloud user dave\n' +
        'team updated\n',
    );
    expect(await serverTeam('flags-team')).toEqual({
      owner: { users: ['bitbucket-cloud:dave'], groups: [] },
    });
  });

  test('the prompt answered y applies the config', async () => {
    const result = await sky(
      skyrc,
      ['-t', 'ci', 'set-team', '-n', 'yes-team', '--bitbucket-cloud-team', 'widgets'],
      'y\n',
    );
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('\napply team configuration? [yN]: team created\n');
    expect(await serverTeam('yes-team')).toEqual({
      owner: { users: [], groups: ['bitbucket-cloud:widgets'] },
    });
  });

  test.each([['n\n'], ['\n'], ['maybe\n'], ['']])(
    'the prompt answered %j bails out and changes nothing',
    async (input) => {
      const result = await sky(
        skyrc,
        ['-t', 'ci', 'set-team', '-n', 'no-team', '--bitbucket-cloud-user', 'bob'],
        input,
      );
      expect(result).toMatchObject({ code: 1, stderr: 'bailing out\n' });
      expect(result.stdout).toContain('apply team configuration? [yN]: ');
      expect(result.stdout).not.toContain('team created');
      expect(await serverTeam('no-team')).toBeNull();
    },
  );
});

describe('with a roles YAML (-c)', () => {
  test('each role gets its users and teams, shown in fly’s order', async () => {
    const file = rolesFile(
      [
        'roles:',
        '- name: owner',
        '  bitbucket-cloud:',
        '    users: ["alice"]',
        '- name: member',
        '  bitbucket-cloud:',
        '    users: ["my-bitbucket-login"]',
        '    teams: ["my-bitbucket-team"]',
        '- name: viewer',
        '  bitbucket-cloud:',
        '    teams: ["acme/developers"]',
        '',
      ].join('\n'),
    );
    const result = await sky(skyrc, [
      '-t',
      'ci',
      'set-team',
      '-n',
      'yaml-team',
      '-c',
      file,
      '--non-interactive',
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toBe(
      'setting team: yaml-team\n' +
        '\nrole member:\n  users:\n  - bitbucket-cloud:my-bitbucket-login\n\n  groups:\n  - bitbucket-cloud:my-bitbucket-team\n' +
        '\nrole owner:\n  users:\n  - bitbucket-cloud:alice\n\n  groups:\n    none\n' +
        '\nrole viewer:\n  users:\n    none\n\n  groups:\n  - bitbucket-cloud:acme/developers\n' +
        '\nnew team\n' +
        'team created\n',
    );
    expect(await serverTeam('yaml-team')).toEqual({
      owner: { users: ['bitbucket-cloud:alice'], groups: [] },
      member: {
        users: ['bitbucket-cloud:my-bitbucket-login'],
        groups: ['bitbucket-cloud:my-bitbucket-team'],
      },
      viewer: { users: [], groups: ['bitbucket-cloud:acme/developers'] },
    });
  });
});

describe('fly’s client-side validation: nothing reaches the server', () => {
  test.each([
    ['no flags at all', [], 'error: auth config for the team does not have users and groups configured\n'],
    [
      'only empty flag values',
      ['--bitbucket-cloud-user', '', '--bitbucket-cloud-team', ' '],
      'error: auth config for the team does not have users and groups configured\n',
    ],
    ['an empty roles file', ['-c', 'EMPTY'], 'error: auth config for the team must not be empty\n'],
    ['a roles file without roles', ['-c', 'NOROLES'], 'error: auth config for the team must not be empty\n'],
    [
      'a role without users and teams',
      ['-c', 'NOMEMBERS'],
      'error: auth config for the team does not have users and groups configured\n',
    ],
    [
      'an unknown role',
      ['-c', 'BADROLE'],
      "error: roles[0]: unknown role 'admin' (roles: owner, member, pipeline-operator, viewer)\n",
    ],
    [
      '-c together with the flags',
      ['-c', 'NOMEMBERS', '--bitbucket-cloud-user', 'bob'],
      'error: --config cannot be combined with --bitbucket-cloud-user, --bitbucket-cloud-team or --local-user: put every user and team in the roles file\n',
    ],
    [
      'a non-ASCII username (the Kelvin sign folds to k in Unicode, not here)',
      ['--bitbucket-cloud-user', '\u212Aarl'],
      "error: owner.users entry '\u212Aarl' has non-ASCII characters or spaces: Bitbucket usernames, ids and workspaces are ASCII\n",
    ],
    [
      'a non-ASCII workspace in a roles file',
      ['-c', 'UNICODE'],
      "error: member.groups entry 'ätsch' has non-ASCII characters or spaces: Bitbucket usernames, ids and workspaces are ASCII\n",
    ],
    [
      'a missing roles file',
      ['-c', '/nonexistent/roles.yml'],
      "error: could not read the config file '/nonexistent/roles.yml': ENOENT: no such file or directory, open '/nonexistent/roles.yml'\n",
    ],
  ])('%s', async (_label, flags, message) => {
    const files: Record<string, string> = {
      EMPTY: rolesFile(''),
      NOROLES: rolesFile('something: else\n'),
      NOMEMBERS: rolesFile('roles:\n- name: owner\n  bitbucket-cloud:\n    users: []\n'),
      BADROLE: rolesFile('roles:\n- name: admin\n  bitbucket-cloud:\n    users: [bob]\n'),
      UNICODE: rolesFile('roles:\n- name: member\n  bitbucket-cloud:\n    teams: [ätsch]\n'),
    };
    const argv = flags.map((f) => files[f] ?? f);
    const result = await sky(skyrc, [
      '-t',
      'ci',
      'set-team',
      '-n',
      'invalid-team',
      ...argv,
      '--non-interactive',
    ]);
    expect(result).toEqual({ code: 1, stdout: '', stderr: message });
    expect(await serverTeam('invalid-team')).toBeNull();
  });

  test('a bad team name and a missing -n', async () => {
    expect(await sky(skyrc, ['-t', 'ci', 'set-team', '-n', 'A/B', '--bitbucket-cloud-user', 'bob'])).toEqual({
      code: 1,
      stdout: '',
      stderr:
        "error: invalid team name 'A/B': use 1-64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit\n",
    });
    expect(await sky(skyrc, ['-t', 'ci', 'set-team', '--bitbucket-cloud-user', 'bob'])).toEqual({
      code: 1,
      stdout: '',
      stderr: "error: the required flag `-n, --team-name' was not specified\n",
    });
  });
});

describe('the server decides who may', () => {
  test('a non-admin creating a team gets the server’s 403 message', async () => {
    const result = await sky(skyrc, [
      '-t',
      'bob',
      'set-team',
      '-n',
      'bobs-new-team',
      '--bitbucket-cloud-user',
      'bob',
      '--non-interactive',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('error: forbidden\n');
    expect(await serverTeam('bobs-new-team')).toBeNull();
  });

  test('an owner who is not admin updates their own team', async () => {
    const result = await sky(skyrc, [
      '-t',
      'bob',
      'set-team',
      '-n',
      'builders',
      '--bitbucket-cloud-user',
      'bob',
      '--bitbucket-cloud-team',
      'widgets',
      '--non-interactive',
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/team updated\n$/);
    expect(await serverTeam('builders')).toEqual({
      owner: { users: ['bitbucket-cloud:bob'], groups: ['bitbucket-cloud:widgets'] },
    });
  });

  test('the server’s validation message comes through (main must keep the caller as owner)', async () => {
    const result = await sky(skyrc, [
      '-t',
      'ci',
      'set-team',
      '-n',
      'main',
      '--bitbucket-cloud-user',
      'bob',
      '--non-interactive',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'error: the new config of main must keep you as an owner (its owners are the admins; this avoids a lock-out)\n',
    );
  });

  test('without a target, fly’s "no target specified"', async () => {
    const result = await sky(skyrc, ['set-team', '-n', 'x', '--bitbucket-cloud-user', 'bob']);
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'no target specified. specify the target with -t or log in like so:\n\n    sky -t (alias) login -c (url)\n',
    });
  });
});
