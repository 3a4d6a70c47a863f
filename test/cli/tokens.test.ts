import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { wellFormed } from '../../lib/tokens/automation';
import { startNode, type TestNode } from '../harness/node';
import { inTerminal, loginByPaste, readSkyrc, sky, tempSkyrc } from './cli';

/**
 * create-token, tokens, revoke-token, audit, and a target logged in with an automation token
 * (`sky login --token-file`), against a running node, real Redis and the fake Bitbucket.
 */
jest.setTimeout(60_000);

const TEAM = 'deployers';
let fake: FakeBitbucket;
let node: TestNode;
/** bob (owner of TEAM) on target `ci`, carol (member) on target `m`. */
let skyrc: string;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  await node.putTeam(TEAM, { owner: { users: ['bob'] }, member: { users: ['carol'] } });
  skyrc = tempSkyrc();
  await loginByPaste(skyrc, 'ci', node.url, fake, 'bob', TEAM);
  await loginByPaste(skyrc, 'm', node.url, fake, 'carol', TEAM);
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

/** A file next to the .skyrc holding `text`. */
function tokenFile(name: string, text: string): string {
  const file = path.join(path.dirname(skyrc), name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

/** Creates a token with the CLI; resolves its secret. */
async function created(name: string, role = 'viewer'): Promise<string> {
  const result = await sky(skyrc, ['-t', 'ci', 'create-token', '-n', TEAM, '--name', name, '--role', role]);
  if (result.code !== 0) throw new Error(`create-token failed: ${result.stderr}`);
  return result.stdout.trim();
}

describe('create-token and tokens', () => {
  test('the secret alone on stdout, once; what it is and that it is not shown again on stderr', async () => {
    const result = await sky(skyrc, [
      '-t',
      'ci',
      'create-token',
      '-n',
      TEAM,
      '--name',
      'deploy-bot',
      '--role',
      'pipeline-operator',
      '--expires',
      '30d',
    ]);
    expect(result.code).toBe(0);
    const secret = result.stdout.trim();
    expect(result.stdout).toBe(`${secret}\n`);
    expect(secret).toMatch(/^sky_at_[0-9A-Za-z]{46}$/);
    expect(wellFormed(secret)).toBe(true);
    expect(result.stderr).toMatch(
      new RegExp(
        `^created automation token 'deploy-bot' of team '${TEAM}' \\(role pipeline-operator, expires \\d{4}-\\d\\d-\\d\\d@\\d\\d:\\d\\d:\\d\\d\\+0000\\):\\n\\n\\n` +
          `this token will not be shown again: store it now \\(a CI secret, or a file for sky login -n ${TEAM} --token-file FILE\\)\\n$`,
      ),
    );
    expect(result.stderr).not.toContain(secret);
    const expires = /expires (\d{4}-\d\d-\d\d)@/.exec(result.stderr)?.[1] ?? '';
    const days = (Date.parse(expires) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(28.9);
    expect(days).toBeLessThan(30.1);

    // The list: name, role, who made it, when it expires, never used; no secret anywhere.
    const listed = await sky(skyrc, ['-t', 'ci', 'tokens', '-n', TEAM, '--print-table-headers']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(secret);
    const lines = listed.stdout.split('\n');
    expect(lines[0]).toMatch(/^name\s+role\s+created by\s+expires\s+last used$/);
    expect(lines[1]).toMatch(
      /^deploy-bot\s+pipeline-operator\s+Bob Builder\s+\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d\+0000\s+never$/,
    );
    const json = await sky(skyrc, ['-t', 'ci', 'tokens', '-n', TEAM, '--json']);
    expect(json.stdout).not.toContain(secret);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({ name: 'deploy-bot', role: 'pipeline-operator', last_used_at: null }),
    ]);
    // Without -n: the target's team.
    expect((await sky(skyrc, ['-t', 'ci', 'tokens'])).stdout).toMatch(/^deploy-bot\s+pipeline-operator/);
  });

  test('--json: the node’s answer with the secret; the warning still on stderr', async () => {
    const result = await sky(skyrc, [
      '-t',
      'ci',
      'create-token',
      '-n',
      TEAM,
      '--name',
      'json-bot',
      '--role',
      'viewer',
      '--json',
    ]);
    expect(result.code).toBe(0);
    const body = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(body).toMatchObject({ team: TEAM, name: 'json-bot', role: 'viewer' });
    expect(wellFormed(String(body['token']))).toBe(true);
    expect(result.stderr).toContain('this token will not be shown again');
    await sky(skyrc, ['-t', 'ci', 'revoke-token', '-n', TEAM, '--name', 'json-bot']);
  });

  test('the node’s refusals in its own words: a member (403), a duplicate name (409)', async () => {
    const member = await sky(skyrc, ['-t', 'm', 'create-token', '--name', 'mine', '--role', 'viewer']);
    expect(member).toEqual({ code: 1, stdout: '', stderr: 'error: forbidden\n' });
    const listed = await sky(skyrc, ['-t', 'm', 'tokens']);
    expect(listed).toMatchObject({ code: 1, stderr: 'error: forbidden\n' });
    await created('twice');
    const again = await sky(skyrc, ['-t', 'ci', 'create-token', '--name', 'twice', '--role', 'viewer']);
    expect(again).toEqual({
      code: 1,
      stdout: '',
      stderr: `error: team '${TEAM}' has an automation token named 'twice' already\n`,
    });
    const gone = await sky(skyrc, ['-t', 'ci', 'revoke-token', '--name', 'no-such-bot']);
    expect(gone).toEqual({
      code: 1,
      stdout: '',
      stderr: `error: team '${TEAM}' has no automation token named 'no-such-bot'\n`,
    });
  });

  test('in a terminal: headers without asking, and the secret between its two notices', async () => {
    const made = await inTerminal(skyrc, [
      '-t',
      'ci',
      'create-token',
      '--name',
      'tty-bot',
      '--role',
      'member',
      '--expires',
      '720h',
    ]);
    expect(made.code).toBe(0);
    expect(made.output).toMatch(
      new RegExp(
        `^created automation token 'tty-bot' of team '${TEAM}' \\(role member, expires \\S+\\):\\n\\nsky_at_[0-9A-Za-z]{46}\\n\\nthis token will not be shown again`,
      ),
    );
    const listed = await inTerminal(skyrc, ['-t', 'ci', 'tokens']);
    expect(listed.code).toBe(0);
    expect(listed.output.split('\n')[0]).toMatch(/^name\s+role\s+created by\s+expires\s+last used$/);
    expect(listed.output).toMatch(/\ntty-bot\s+member\s/);
    const revoked = await inTerminal(skyrc, ['-t', 'ci', 'revoke-token', '--name', 'tty-bot']);
    expect(revoked).toMatchObject({
      code: 0,
      output: `revoked automation token 'tty-bot' of team '${TEAM}'\n`,
    });
  });
});

describe('a target with an automation token', () => {
  test('logs in from --token-file, passes get-team, is refused set-team and userinfo in words; revoked, it is refused', async () => {
    const secret = await created('bot-login', 'pipeline-operator');
    const file = tokenFile('bot.token', `${secret}\n`);
    const login = await sky(skyrc, ['-t', 'bot', 'login', '-c', node.url, '-n', TEAM, '--token-file', file]);
    expect(login).toEqual({
      code: 0,
      stderr: '',
      stdout: `logging in to team '${TEAM}' with the automation token in '${file}'\n\ntarget saved\n`,
    });
    const saved = readSkyrc(skyrc).targets['bot'];
    expect(saved).toEqual({ api: node.url, team: TEAM, token: { type: 'bearer', value: secret } });

    const team = await sky(skyrc, ['-t', 'bot', 'get-team', '-n', TEAM]);
    expect(team.code).toBe(0);
    expect(team.stdout).toContain(`${TEAM}/owner`);
    // The last use shows in the owner's list.
    const listed = await sky(skyrc, ['-t', 'ci', 'tokens']);
    expect(listed.stdout).toMatch(/bot-login\s+pipeline-operator\s+Bob Builder\s+\S+\s+\d{4}-\d\d-\d\d@/);

    const status = await sky(skyrc, ['-t', 'bot', 'status']);
    expect(status).toEqual({
      code: 0,
      stderr: '',
      stdout: `logged in successfully with an automation token of team '${TEAM}'\n`,
    });
    const targets = await sky(skyrc, ['targets']);
    expect(targets.stdout).toMatch(/^bot\s+\S+\s+deployers\s+n\/a: automation token\n/);

    const setTeam = await sky(skyrc, [
      '-t',
      'bot',
      'set-team',
      '-n',
      TEAM,
      '--bitbucket-cloud-user',
      'mallory',
      '--non-interactive',
    ]);
    expect(setTeam.code).toBe(1);
    expect(setTeam.stderr).toBe(
      `this target uses an automation token of team '${TEAM}': it passes only the role routes of its team (such as sky -t bot get-team -n ${TEAM}), and this command needs a person's login. log in as a person on another target:\n\n    sky -t (alias) login -c ${node.url}\n`,
    );
    const userinfo = await sky(skyrc, ['-t', 'bot', 'userinfo']);
    expect(userinfo).toEqual({
      code: 1,
      stdout: '',
      stderr: `this target uses an automation token of team '${TEAM}': there is no user behind it to show (userinfo needs a person's login). check the token with:\n\n    sky -t bot status\n`,
    });
    const tokens = await sky(skyrc, ['-t', 'bot', 'tokens']);
    expect(tokens.stderr).toMatch(/^this target uses an automation token of team/);
    // Another team's route: the node's 403.
    expect(await sky(skyrc, ['-t', 'bot', 'get-team', '-n', 'main'])).toMatchObject({
      code: 1,
      stderr: 'error: forbidden\n',
    });
    // Nothing was refreshed or rewritten.
    expect(readSkyrc(skyrc).targets['bot']).toEqual(saved);

    const revoked = await sky(skyrc, ['-t', 'ci', 'revoke-token', '-n', TEAM, '--name', 'bot-login']);
    expect(revoked).toEqual({
      code: 0,
      stderr: '',
      stdout: `revoked automation token 'bot-login' of team '${TEAM}'\n`,
    });
    expect((await sky(skyrc, ['-t', 'ci', 'tokens'])).stdout).not.toContain('bot-login');
    const refused = await sky(skyrc, ['-t', 'bot', 'get-team', '-n', TEAM]);
    expect(refused).toEqual({
      code: 1,
      stdout: '',
      stderr: `the automation token of target 'bot' was refused: it was revoked or has expired, or team '${TEAM}' was deleted. save a new one with:\n\n    sky -t bot login -n ${TEAM} --token-file FILE\n`,
    });
    const after = await inTerminal(skyrc, ['-t', 'bot', 'status']);
    expect(after).toMatchObject({
      code: 1,
      output: `please login again.\n\ntoken validation failed with error: the node refuses the automation token (revoked, expired, or team '${TEAM}' was deleted)\n`,
    });
    const again = await sky(skyrc, ['-t', 'bot', 'login', '-n', TEAM, '--token-file', file]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `error: ${node.url} did not accept the automation token in '${file}': it is unknown, revoked or expired, or its team was deleted\n`,
    );

    // logout forgets it here and says it stays valid there.
    const other = tokenFile('other.token', await created('bot-logout'));
    expect((await sky(skyrc, ['-t', 'bot', 'login', '-n', TEAM, '--token-file', other])).code).toBe(0);
    const logout = await sky(skyrc, ['-t', 'bot', 'logout']);
    expect(logout.code).toBe(0);
    expect(logout.stderr).toContain('removed from this machine only');
    expect(readSkyrc(skyrc).targets['bot']?.token).toBeUndefined();
  });

  test('without -n the team is main: the refusal says to give the token’s team', async () => {
    const file = tokenFile('main.token', await created('bot-main'));
    const result = await sky(skyrc, ['-t', 'wrong', 'login', '-c', node.url, '--token-file', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `error: the automation token in '${file}' is not a token of team 'main' (it was not given with -n): give the token's team with -n TEAM\n`,
    );
    expect(readSkyrc(skyrc).targets['wrong']).toBeUndefined();
  });
});

test('audit: the token.create and token.revoke events, as a table and as JSON', async () => {
  await created('audited', 'viewer');
  await sky(skyrc, ['-t', 'ci', 'revoke-token', '--name', 'audited']);
  const table = await sky(skyrc, ['-t', 'ci', 'audit', '-n', TEAM, '--since', '1h', '--print-table-headers']);
  expect(table.code).toBe(0);
  const lines = table.stdout.split('\n');
  expect(lines[0]).toMatch(/^time\s+action\s+who\s+team\s+detail$/);
  const revoke = lines.findIndex((l) => /\stoken\.revoke\s.*name=audited, role=viewer$/.test(l));
  const create = lines.findIndex((l) => /\stoken\.create\s.*name=audited, role=viewer, expires_at=/.test(l));
  expect(revoke).toBeGreaterThan(0);
  // Newest first.
  expect(create).toBeGreaterThan(revoke);
  expect(lines[create]).toMatch(
    new RegExp(
      `^\\d{4}-\\d\\d-\\d\\d@\\d\\d:\\d\\d:\\d\\d\\+0000\\s+token\\.create\\s+Bob Builder\\s+${TEAM}\\s`,
    ),
  );

  const json = await sky(skyrc, ['-t', 'ci', 'audit', '-n', TEAM, '--limit', '500', '--json']);
  expect(json.code).toBe(0);
  const events = JSON.parse(json.stdout) as { action: string; team: string; detail: { name?: string } }[];
  expect(events.filter((e) => e.detail.name === 'audited').map((e) => e.action)).toEqual([
    'token.revoke',
    'token.create',
  ]);
  expect(events.every((e) => e.team === TEAM)).toBe(true);
  expect(json.stdout).not.toMatch(/sky_at_/);
  const two = JSON.parse((await sky(skyrc, ['-t', 'ci', 'audit', '--limit', '2', '-j'])).stdout) as unknown[];
  expect(two).toHaveLength(2);
  // A member is no owner: the node's 403.
  expect(await sky(skyrc, ['-t', 'm', 'audit'])).toMatchObject({ code: 1, stderr: 'error: forbidden\n' });
});

describe('bad flags: exit 1, a message naming the flag, and no request', () => {
  /** A target where nothing answers: a request would fail with "could not reach". */
  let offline: string;
  beforeAll(() => {
    offline = tempSkyrc();
    writeFileSync(
      offline,
      JSON.stringify({
        targets: { x: { api: 'http://127.0.0.1:9', team: TEAM, token: { type: 'bearer', value: 'jwt' } } },
      }),
    );
  });
  const cases: [string[], string][] = [
    [['create-token', '--role', 'viewer'], "the required flag `--name' was not specified"],
    [['create-token', '--name', 'bot'], "the required flag `--role' was not specified"],
    [
      ['create-token', '--name', 'bot', '--role', 'admin'],
      "invalid --role 'admin': use one of owner, member, pipeline-operator, viewer",
    ],
    [
      ['create-token', '--name', 'Bad Name', '--role', 'viewer'],
      "invalid --name 'Bad Name': 1-64 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
    ],
    [
      ['create-token', '--name', 'bot', '--role', 'viewer', '--expires', 'soon'],
      "invalid --expires 'soon': give a duration such as 30d, 720h or 90m (at least 1m), or seconds",
    ],
    [
      ['create-token', '--name', 'bot', '--role', 'viewer', '--expires', '10s'],
      "invalid --expires '10s': give a duration such as 30d, 720h or 90m (at least 1m), or seconds",
    ],
    [
      ['create-token', '-n', 'Not A Team', '--name', 'bot', '--role', 'viewer'],
      "invalid team name 'Not A Team': use 1-64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit",
    ],
    [['revoke-token'], "the required flag `--name' was not specified"],
    [['create-token', '--name'], "expected argument for flag `--name'"],
    [['tokens', '--role', 'viewer'], "unknown flag `--role' for sky tokens; see sky tokens --help"],
    [
      ['audit', '--since', 'yesterday'],
      "invalid --since 'yesterday': give a duration such as 24h or 7d, or a time such as 2026-12-01T00:00:00Z",
    ],
    [['audit', '--limit', '0'], "invalid --limit '0': give 1-1000"],
    [['audit', '--limit', 'many'], "invalid --limit 'many': give 1-1000"],
  ];
  test.each(cases)('sky -t x %j', async (args, message) => {
    expect(await sky(offline, ['-t', 'x', ...args])).toEqual({
      code: 1,
      stdout: '',
      stderr: `error: ${message}\n`,
    });
  });

  test('login --token-file: not with -u/-p, a file that is no token, a damaged one, a missing one', async () => {
    const secret = await created('bot-flags');
    const good = tokenFile('good.token', secret);
    const notToken = tokenFile('not.token', 'hunter2\n');
    const damaged = tokenFile('damaged.token', secret.slice(0, -1) + (secret.endsWith('a') ? 'b' : 'a'));
    const missing = path.join(path.dirname(skyrc), 'missing.token');
    const login = (...args: string[]) =>
      sky(offline, ['-t', 'x', 'login', '-c', 'http://127.0.0.1:9', '-n', TEAM, ...args]);
    const refusals: [string[], string][] = [
      [
        ['--token-file', good, '-u', 'alice'],
        '--token-file cannot be combined with --username (-u) or --password (-p): the automation token is the whole login',
      ],
      [
        ['--token-file', good, '-p', 'secret'],
        '--token-file cannot be combined with --username (-u) or --password (-p): the automation token is the whole login',
      ],
      [['--token-file', good, '-b'], '--token-file needs no browser: drop --open-browser (-b) and --port'],
      [
        ['--token-file', notToken],
        `'${notToken}' does not hold an automation token: --token-file takes a file with only the sky_at_… secret that sky create-token printed`,
      ],
      [
        ['--token-file', damaged],
        `the automation token in '${damaged}' is damaged (wrong length or checksum): copy the secret sky create-token printed again`,
      ],
      [['--token-file', missing], `could not read the token file '${missing}': ENOENT`],
    ];
    for (const [args, message] of refusals) {
      expect(await login(...args)).toEqual({ code: 1, stdout: '', stderr: `error: ${message}\n` });
    }
    expect(readFileSync(offline, 'utf8')).not.toContain('sky_at_');
  });
});

test('completion and --help know the new commands and flags', async () => {
  const script = (await sky(skyrc, ['completion', '--shell', 'bash'])).stdout;
  for (const name of ['create-token', 'tokens', 'revoke-token', 'audit']) expect(script).toContain(name);
  expect(script).toMatch(/create-token\) opts='[^']*--role[^']*--expires/);
  expect(script).toMatch(/login\|l\) opts='[^']*--token-file/);
  const help = await sky(skyrc, ['create-token', '--help']);
  expect(help.stdout).toContain('--role=ROLE');
  expect((await sky(skyrc, ['--help'])).stdout).toMatch(/\n {2}audit\s+Show the audit trail/);
});
