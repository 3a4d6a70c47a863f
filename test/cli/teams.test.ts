import { FakeBitbucket } from '../../lib/testing';
import { startNode, type TestNode } from '../harness/node';
import { loginByPaste, modeOf, readSkyrc, sky, tempSkyrc } from './cli';

/** teams, get-team, destroy-team, userinfo, logout and targets, against a running node. */
let fake: FakeBitbucket;
let node: TestNode;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  await node.putTeam('builders', { owner: { users: ['bob'] }, viewer: { groups: ['acme'] } });
  await node.putTeam('widgets-team', { member: { groups: ['widgets'] } });
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

const status = async (jwt: string, path = '/api/v1/user'): Promise<number> =>
  (await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${jwt}` } })).status;

describe('teams', () => {
  test('an admin sees every team, sorted; -d shows each role’s users and groups', async () => {
    const skyrc = tempSkyrc();
    await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
    expect(await sky(skyrc, ['-t', 'ci', 'teams'])).toEqual({
      code: 0,
      stderr: '',
      stdout: 'builders\nmain\nwidgets-team\n',
    });
    const details = await sky(skyrc, ['-t', 'ci', 'teams', '-d', '--print-table-headers']);
    expect(details.code).toBe(0);
    expect(details.stdout.split('\n')).toEqual([
      'name/role            users                  groups',
      'builders/owner       bitbucket-cloud:bob    none',
      'builders/viewer      none                   bitbucket-cloud:acme',
      'main/owner           bitbucket-cloud:alice  none',
      'widgets-team/member  none                   bitbucket-cloud:widgets',
      '',
    ]);
  });

  test('a non-admin sees only their teams; --json gives the API’s answer', async () => {
    const skyrc = tempSkyrc();
    await loginByPaste(skyrc, 'b', node.url, fake, 'bob', 'builders');
    expect((await sky(skyrc, ['-t', 'b', 'teams'])).stdout).toBe('builders\nwidgets-team\n');
    const json = await sky(skyrc, ['-t', 'b', 'teams', '--json']);
    expect(JSON.parse(json.stdout)).toEqual([
      {
        name: 'builders',
        auth: {
          owner: { users: ['bitbucket-cloud:bob'], groups: [] },
          viewer: { users: [], groups: ['bitbucket-cloud:acme'] },
        },
      },
      { name: 'widgets-team', auth: { member: { users: [], groups: ['bitbucket-cloud:widgets'] } } },
    ]);
  });
});

describe('get-team', () => {
  let skyrc: string;
  beforeAll(async () => {
    skyrc = tempSkyrc();
    await loginByPaste(skyrc, 'c', node.url, fake, 'carol', 'builders');
  });

  test('shows a team the caller may view', async () => {
    expect(await sky(skyrc, ['-t', 'c', 'get-team', '-n', 'builders'])).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'builders/owner   bitbucket-cloud:bob (username)  none\nbuilders/viewer  none                            bitbucket-cloud:acme\n',
    });
    const json = await sky(skyrc, ['-t', 'c', 'gt', '-n', 'builders', '-j']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      name: 'builders',
      auth: { viewer: { groups: ['bitbucket-cloud:acme'] } },
    });
  });

  test('a team the caller has no role on: the server’s 403 message', async () => {
    expect(await sky(skyrc, ['-t', 'c', 'get-team', '-n', 'main'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: forbidden\n',
    });
  });
});

describe('destroy-team', () => {
  let skyrc: string;
  beforeAll(async () => {
    skyrc = tempSkyrc();
    await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
    await loginByPaste(skyrc, 'b', node.url, fake, 'bob', 'builders');
  });

  const exists = async (team: string): Promise<boolean> => {
    const token = readSkyrc(skyrc).targets['ci']?.token?.value ?? '';
    const code = await status(token, `/api/v1/teams/${team}`);
    expect([200, 404]).toContain(code);
    return code === 200;
  };

  test('asks for the team name; the right name destroys it', async () => {
    await node.putTeam('doomed', { owner: { users: ['dave'] } });
    const result = await sky(skyrc, ['-t', 'ci', 'destroy-team', '-n', 'doomed'], 'doomed\n');
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout:
        '!!! this will remove all data for team `doomed`\n\n' +
        'are you sure? please type the team name to continue: \n`doomed` deleted\n',
    });
    expect(await exists('doomed')).toBe(false);
  });

  test('a wrong name bails out and the team stays', async () => {
    await node.putTeam('survivor', { owner: { users: ['dave'] } });
    const result = await sky(skyrc, ['-t', 'ci', 'dt', '-n', 'survivor'], 'survivr\n');
    expect(result).toMatchObject({ code: 1, stderr: 'incorrect team name; bailing out\n' });
    expect(await exists('survivor')).toBe(true);
  });

  test('--non-interactive does not ask', async () => {
    await node.putTeam('quick', { owner: { users: ['dave'] } });
    const result = await sky(skyrc, ['-t', 'ci', 'destroy-team', '-n', 'quick', '--non-interactive']);
    expect(result.code).toBe(0);
    expect(result.stdout).not.toContain('please type');
    expect(await exists('quick')).toBe(false);
  });

  test.each([
    ['main, even for an admin', 'ci', 'main', 'the main team cannot be deleted'],
    ['by a non-admin', 'b', 'builders', 'forbidden'],
    ['a team that does not exist', 'ci', 'ghost', "team 'ghost' not found"],
  ])('refused: %s', async (_label, target, team, message) => {
    const result = await sky(skyrc, ['-t', target, 'destroy-team', '-n', team, '--non-interactive']);
    expect(result).toMatchObject({ code: 1, stderr: `\ncould not destroy \`${team}\`\n\n${message}\n` });
  });
});

describe('userinfo', () => {
  test('the user and their team/roles; --json gives the API’s answer', async () => {
    const skyrc = tempSkyrc();
    await loginByPaste(skyrc, 'b', node.url, fake, 'bob', 'builders');
    expect(await sky(skyrc, ['-t', 'b', 'userinfo', '--print-table-headers'])).toEqual({
      code: 0,
      stderr: '',
      stdout: 'username  team/role\nbob       builders/owner,widgets-team/member\n',
    });
    const json = JSON.parse((await sky(skyrc, ['-t', 'b', 'userinfo', '--json'])).stdout) as Record<
      string,
      unknown
    >;
    expect(json).toMatchObject({
      user_name: 'bob',
      is_admin: false,
      connector: 'bitbucket-cloud',
      teams: { builders: ['owner'], 'widgets-team': ['member'] },
    });
  });
});

describe('logout and targets', () => {
  test('logout revokes the token at the node and removes it from .skyrc; the target stays', async () => {
    const skyrc = tempSkyrc();
    const jwt = await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
    expect(await status(jwt)).toBe(200);
    expect(await sky(skyrc, ['-t', 'ci', 'logout'])).toEqual({
      code: 0,
      stderr: '',
      stdout: 'logged out of target: ci\n',
    });
    expect(await status(jwt)).toBe(401);
    expect(readSkyrc(skyrc).targets['ci']).toEqual({ api: node.url, team: 'main' });
    expect(modeOf(skyrc)).toBe(0o600);
    expect(await sky(skyrc, ['-t', 'ci', 'userinfo'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'not logged in. run the following to log in:\n\n    sky -t ci login\n',
    });
  });

  test('logout -a logs out of every target; -t with -a is refused', async () => {
    const skyrc = tempSkyrc();
    const one = await loginByPaste(skyrc, 'one', node.url, fake, 'alice');
    const two = await loginByPaste(skyrc, 'two', node.url, fake, 'bob', 'builders');
    expect(await sky(skyrc, ['-t', 'one', 'logout', '-a'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: must specify either --target or --all\n',
    });
    expect(await sky(skyrc, ['logout', '-a'])).toMatchObject({
      code: 0,
      stdout: 'logged out of all targets\n',
    });
    expect([await status(one), await status(two)]).toEqual([401, 401]);
    const targets = readSkyrc(skyrc).targets;
    expect(targets['one']?.token).toBeUndefined();
    expect(targets['two']?.token).toBeUndefined();
  });

  test('targets lists name, url, team and the token’s expiry', async () => {
    const skyrc = tempSkyrc();
    const jwt = await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
    await loginByPaste(skyrc, 'b', node.url, fake, 'bob', 'builders');
    await sky(skyrc, ['-t', 'b', 'logout']);
    const exp = (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { exp: number })
      .exp;
    const expiry = new Date(exp * 1000).toUTCString().replace('GMT', 'UTC');
    const result = await sky(skyrc, ['targets', '--print-table-headers']);
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').map((line) => line.split(/ {2,}/))).toEqual([
      ['name', 'url', 'team', 'expiry'],
      ['b', node.url, 'builders', 'n/a'],
      ['ci', node.url, 'main', expiry],
      [''],
    ]);
  });

  test('an expired or revoked token without a refresh token: fly’s "log in again"', async () => {
    const skyrc = tempSkyrc();
    const jwt = await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
    await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: { authorization: `Bearer ${jwt}` } });
    expect(await sky(skyrc, ['-t', 'ci', 'teams'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'not authorized. run the following to log in again:\n\n    sky -t ci login\n',
    });
  });
});

describe('the command line itself', () => {
  test.each([
    [['-t', 'nope', 'teams'], 'error: unknown target: nope\n'],
    [['frobnicate'], "error: unknown command `frobnicate'; run sky --help for the list of commands\n"],
    [['-t', 'ci', 'teams', '--bogus'], "error: unknown flag `--bogus' for sky teams; see sky teams --help\n"],
    [['-t', 'ci', 'userinfo', '--json=yes'], "error: flag `--json' does not take a value\n"],
    [['-t', 'ci', 'get-team'], "error: the required flag `-n, --team-name' was not specified\n"],
  ])('sky %j', async (argv, message) => {
    expect(await sky(tempSkyrc(), argv)).toEqual({ code: 1, stdout: '', stderr: message });
  });

  test('--help lists the commands; a command’s --help lists its flags', async () => {
    const help = await sky(tempSkyrc(), ['--help']);
    expect(help.code).toBe(0);
    for (const command of [
      'login',
      'logout',
      'set-team',
      'teams',
      'get-team',
      'destroy-team',
      'userinfo',
      'targets',
    ]) {
      expect(help.stdout).toMatch(new RegExp(`^ {2}${command} `, 'm'));
    }
    const setTeam = await sky(tempSkyrc(), ['set-team', '-h']);
    expect(setTeam.stdout).toContain('--bitbucket-cloud-user=USERNAME');
    expect(setTeam.stdout).toContain('--non-interactive');
  });
});
