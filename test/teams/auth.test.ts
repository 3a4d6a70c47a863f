import fc from 'fast-check';
import type { Identity } from '../../lib/connector';
import {
  parseRolesYaml,
  parseTeamAuth,
  principalsOf,
  ROLE_INCLUDES,
  roleIncludes,
  roleOf,
  ROLES,
  rolesOf,
  teamAuthFromFlags,
  validateTeamName,
  kindOfEntry,
  rolesYamlOf,
} from '../../lib/teams/auth';

const alice: Identity = {
  connector: 'bitbucket-cloud',
  userId: '{AAAA-1}',
  accountId: '557058:Alice',
  userName: 'Alice',
  name: 'Alice',
  groups: ['Acme', 'acme/developers'],
};

describe("Concourse's validation messages", () => {
  test.each([[{}], [null], [[]], ['owner'], [42]])('%p → must not be empty', (raw) => {
    expect(() => parseTeamAuth(raw)).toThrow('auth config for the team must not be empty');
  });
  test.each([[{ owner: {} }], [{ owner: { users: [], groups: [] } }], [{ viewer: null }]])(
    '%p → does not have users and groups configured',
    (raw) => {
      expect(() => parseTeamAuth(raw)).toThrow(
        'auth config for the team does not have users and groups configured',
      );
    },
  );
  test('unknown roles, unknown keys and bad entries are named', () => {
    expect(() => parseTeamAuth({ admin: { users: ['x'] } })).toThrow("unknown role 'admin'");
    expect(() => parseTeamAuth({ owner: { users: ['x'], teams: ['y'] } })).toThrow("unknown key 'teams'");
    expect(() => parseTeamAuth({ owner: { users: [1] } })).toThrow('owner.users must be a list of strings');
    expect(() => parseTeamAuth({ owner: { users: 'alice' } })).toThrow(
      'owner.users must be a list of strings',
    );
    expect(() => parseTeamAuth({ owner: { users: [' '] } })).toThrow('owner.users contains an empty entry');
    expect(() => parseTeamAuth({ owner: { users: ['x'.repeat(300)] } })).toThrow('longer than 256');
    expect(() =>
      parseTeamAuth({ owner: { groups: Array.from({ length: 1001 }, (_, i) => `g${i}`) } }),
    ).toThrow('more than 1000 entries');
    expect(() => parseTeamAuth(JSON.parse('{"__proto__": {"users": ["x"]}}'))).toThrow(
      "unknown role '__proto__'",
    );
  });
});

test('entries are trimmed, lower-cased, deduplicated and prefixed', () => {
  expect(
    parseTeamAuth({
      owner: { users: [' Alice ', 'bitbucket-cloud:ALICE', '{UUID-1}'], groups: ['Acme:Owner', 'acme/Devs'] },
    }),
  ).toEqual({
    owner: {
      users: ['bitbucket-cloud:alice', 'bitbucket-cloud:{uuid-1}'],
      groups: ['bitbucket-cloud:acme:owner', 'bitbucket-cloud:acme/devs'],
    },
  });
});

test('roles YAML (fly set-team --config)', () => {
  const yaml = [
    'roles:',
    '- name: member',
    '  bitbucket-cloud:',
    '    users: ["my-login"]',
    '    teams: ["my-team"]',
    '- name: viewer',
    '  bitbucket-cloud:',
    '    teams: [acme]',
    '',
  ].join('\n');
  expect(parseRolesYaml(yaml)).toEqual({
    member: { users: ['bitbucket-cloud:my-login'], groups: ['bitbucket-cloud:my-team'] },
    viewer: { users: [], groups: ['bitbucket-cloud:acme'] },
  });
  expect(() => parseRolesYaml('roles: [')).toThrow('invalid roles YAML');
  expect(() => parseRolesYaml('roles: []')).toThrow('auth config for the team must not be empty');
  expect(() => parseRolesYaml('roles:\n- name: boss\n')).toThrow("unknown role 'boss'");
  expect(() => parseRolesYaml('roles:\n- name: owner\n  github: {users: [x]}\n')).toThrow(
    "unknown key 'github'",
  );
  expect(() => parseRolesYaml('roles:\n- name: owner\n')).toThrow(
    'does not have users and groups configured',
  );
});

test('flags make owners', () => {
  expect(teamAuthFromFlags({ 'bitbucket-cloud': { users: ['alice'], groups: ['acme'] } })).toEqual({
    owner: { users: ['bitbucket-cloud:alice'], groups: ['bitbucket-cloud:acme'] },
  });
});

test('principals: uuid, account_id and username, never anything else; groups', () => {
  expect(principalsOf(alice)).toEqual({
    users: ['bitbucket-cloud:{aaaa-1}', 'bitbucket-cloud:557058:alice', 'bitbucket-cloud:alice'],
    typed: [
      'uuid|bitbucket-cloud:{aaaa-1}',
      'account id|bitbucket-cloud:557058:alice',
      'username|bitbucket-cloud:alice',
    ],
    groups: ['bitbucket-cloud:acme', 'bitbucket-cloud:acme/developers'],
  });
  const { userName: _none, ...noUsername } = alice;
  expect(principalsOf(noUsername).users).toEqual([
    'bitbucket-cloud:{aaaa-1}',
    'bitbucket-cloud:557058:alice',
  ]);
});

test('matching is case-insensitive; the highest role counts; every held role is listed', () => {
  const auth = parseTeamAuth({
    viewer: { groups: ['ACME'] },
    member: { users: ['{aaaa-1}'] },
    owner: { users: ['bob'] },
  });
  expect(roleOf(alice, auth)).toBe('member');
  expect(rolesOf(alice, auth)).toEqual(['member', 'viewer']);
  expect(roleOf({ ...alice, userId: '{x}', accountId: 'y', userName: 'carol', groups: [] }, auth)).toBeNull();
});

test('the role table: every held role × every required role', () => {
  const rank = (r: string): number => ROLES.indexOf(r as (typeof ROLES)[number]);
  for (const held of ROLES) {
    for (const required of ROLES) {
      expect(roleIncludes(held, required)).toBe(rank(held) <= rank(required));
      expect(ROLE_INCLUDES[held].includes(required)).toBe(roleIncludes(held, required));
    }
  }
});

test('team names', () => {
  for (const ok of ['main', 'a', 'team-1', 'my_team.v2', '9lives']) expect(validateTeamName(ok)).toBe(ok);
  for (const bad of ['', '..', '.hidden', 'a/b', 'A', 'Team', 'a b', 'x'.repeat(65), '-x', 'é']) {
    expect(() => validateTeamName(bad)).toThrow(`invalid team name`);
  }
  fc.assert(
    fc.property(fc.string(), (name) => {
      let accepted = true;
      try {
        validateTeamName(name);
      } catch {
        accepted = false;
      }
      expect(accepted).toBe(/^[a-z0-9][a-z0-9._-]{0,63}$/.test(name));
    }),
  );
});

test('a stored entry of a connector this node does not know is kept as saved and matches nobody', () => {
  // Written by a node with another connector: before the registry, `github:alice` came back as
  // `bitbucket-cloud:github:alice`.
  const stored = { owner: { users: ['github:alice', 'bitbucket-cloud:bob'], groups: ['github:acme'] } };
  const auth = parseTeamAuth(JSON.parse(JSON.stringify(stored)), { stored: true });
  expect(auth).toEqual(stored);
  expect(parseTeamAuth(JSON.parse(JSON.stringify(auth)), { stored: true })).toEqual(stored);
  expect(roleOf({ ...alice, userName: 'github' }, auth)).toBeNull();
  expect(kindOfEntry('github:alice')).toBe('unknown');
  // Written through the API, an entry without a known prefix is the default connector's, as fly's.
  expect(parseTeamAuth({ owner: { users: ['557058:alice'] } })).toEqual({
    owner: { users: ['bitbucket-cloud:557058:alice'], groups: [] },
  });
});

test('roles YAML: the config a team has, written out, reads back unchanged', () => {
  const auth = parseTeamAuth({
    owner: { users: ['alice', '{aaaa-1}'], groups: ['acme/devs'] },
    viewer: { groups: ['acme'] },
  });
  const yaml = rolesYamlOf(auth);
  expect(yaml).toContain('bitbucket-cloud:');
  expect(parseRolesYaml(yaml)).toEqual(auth);
});
