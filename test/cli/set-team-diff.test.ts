import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../lib/log';
import { createRedisStore } from '../../lib/store';
import { parseTeamAuth } from '../../lib/teams/auth';
import { TeamStore } from '../../lib/teams/store';
import { FakeBitbucket } from '../../lib/testing';
import { startNode, testRedis, type TestNode } from '../harness/node';
import { loginByPaste, sky, tempSkyrc, waitFor } from './cli';

/**
 * `sky set-team` shows what it changes (issue #18): "new team", the entries added and removed per role,
 * or "no changes" (and then writes nothing); --dry-run only shows; `get-team -o yaml` is a roles file
 * that set-team reads back as "no changes", from a file or from stdin (`-c -`).
 */
let fake: FakeBitbucket;
let node: TestNode;
let skyrc: string; // target "ci" as alice (admin)
let aliceJwt: string;
/** The node's log lines: every team write logs "team saved". */
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n'))
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  node = await startNode({ fake, options: { logger: createLogger('info', sink) } });
  skyrc = tempSkyrc();
  aliceJwt = await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
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

/** How many times the node has written the team (its "team saved" log lines). */
const writes = (team: string): number =>
  lines.filter((l) => l['msg'] === 'team saved' && l['team'] === team).length;

function rolesFile(text: string): string {
  const file = path.join(path.dirname(skyrc), `roles-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(file, text);
  return file;
}

const setTeam = (team: string, ...flags: string[]) => ['-t', 'ci', 'set-team', '-n', team, ...flags];

/** sky as alice (`-t ci` in the argv), with `input` on stdin. */
const cli = (argv: string[], input = '') => sky(skyrc, argv, input);

/** A team with both connectors' entries in several roles. */
const MIXED = {
  owner: { users: ['alice', 'local:admin'] },
  member: { users: ['{aaaa-1}', 'local:carol'], groups: ['acme/devs'] },
  viewer: { groups: ['acme'] },
};
const MIXED_STORED = {
  owner: { users: ['bitbucket-cloud:alice', 'local:admin'], groups: [] },
  member: {
    users: ['bitbucket-cloud:{aaaa-1}', 'local:carol'],
    groups: ['bitbucket-cloud:acme/devs'],
  },
  viewer: { users: [], groups: ['bitbucket-cloud:acme'] },
};

describe('what set-team shows before it applies', () => {
  test('a team that does not exist yet: "new team" after the config, then created', async () => {
    const result = await cli(setTeam('diff-new', '--local-user', 'admin', '--non-interactive'));
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'setting team: diff-new\n\nrole owner:\n  users:\n  - local:admin\n\n  groups:\n    none\n' +
        '\nnew team\n' +
        'team created\n',
    });
    expect(await serverTeam('diff-new')).toEqual({ owner: { users: ['local:admin'], groups: [] } });
  });

  test('a change: per role, the entries removed (-) and added (+), with roles added and removed', async () => {
    await node.putTeam('diff-change', MIXED);
    const file = rolesFile(
      [
        'roles:',
        '- name: owner',
        '  bitbucket-cloud:',
        '    users: [alice, bob]',
        '- name: member',
        '  bitbucket-cloud:',
        '    users: ["{aaaa-1}"]',
        '    teams: [acme/devs, widgets]',
        '- name: pipeline-operator',
        '  local:',
        '    users: [carol]',
        '',
      ].join('\n'),
    );
    const result = await cli(setTeam('diff-change', '-c', file, '--non-interactive'));
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const [config = '', diff = ''] = result.stdout.split('\nchanges:\n');
    expect(config).toMatch(/^setting team: diff-change\n\nrole member:\n/);
    expect(diff).toBe(
      '\nrole member:\n' +
        '- local user carol\n' +
        '+ bitbucket-cloud team widgets\n' +
        '\nrole owner:\n' +
        '- local user admin\n' +
        '+ bitbucket-cloud user bob\n' +
        '\nrole pipeline-operator (added):\n' +
        '+ local user carol\n' +
        '\nrole viewer (removed):\n' +
        '- bitbucket-cloud team acme\n' +
        'team updated\n',
    );
    expect(await serverTeam('diff-change')).toEqual({
      owner: { users: ['bitbucket-cloud:alice', 'bitbucket-cloud:bob'], groups: [] },
      member: {
        users: ['bitbucket-cloud:{aaaa-1}'],
        groups: ['bitbucket-cloud:acme/devs', 'bitbucket-cloud:widgets'],
      },
      'pipeline-operator': { users: ['local:carol'], groups: [] },
    });
  });

  test('the same config: "no changes", exit 0, no prompt and no write (the same entries in another order too)', async () => {
    await node.putTeam('diff-same', { owner: { users: ['bob', 'carol'], groups: ['acme'] } });
    const before = writes('diff-same');
    // No --non-interactive and nothing on stdin: a prompt would read end of input and bail out (exit 1).
    const result = await cli(
      setTeam(
        'diff-same',
        '--bitbucket-cloud-user',
        'Carol',
        '--bitbucket-cloud-user',
        'bob',
        '--bitbucket-cloud-team',
        'acme',
      ),
    );
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'setting team: diff-same\n\nrole owner:\n  users:\n  - bitbucket-cloud:carol\n  - bitbucket-cloud:bob\n' +
        '\n  groups:\n  - bitbucket-cloud:acme\n' +
        '\nno changes\n',
    });
    const forced = await cli(
      setTeam(
        'diff-same',
        '--bitbucket-cloud-user',
        'bob',
        '--bitbucket-cloud-user',
        'carol',
        '--bitbucket-cloud-team',
        'acme',
        '--non-interactive',
      ),
    );
    expect(forced).toMatchObject({ code: 0, stderr: '' });
    expect(forced.stdout).toMatch(/\nno changes\n$/);
    expect(writes('diff-same')).toBe(before);
    expect(await serverTeam('diff-same')).toEqual({
      owner: { users: ['bitbucket-cloud:bob', 'bitbucket-cloud:carol'], groups: ['bitbucket-cloud:acme'] },
    });
  });

  test('the log counts a real write, so "no write" above means something', async () => {
    await node.putTeam('diff-counted', { owner: { users: ['bob'] } });
    const before = writes('diff-counted');
    const result = await cli(setTeam('diff-counted', '--bitbucket-cloud-user', 'carol', '--non-interactive'));
    expect(result.stdout).toMatch(/team updated\n$/);
    expect(writes('diff-counted')).toBe(before + 1);
  });
});

describe('--dry-run', () => {
  test('a change: shows the diff, exit 0, never prompts nor writes', async () => {
    await node.putTeam('dry-change', { owner: { users: ['bob'] } });
    const before = writes('dry-change');
    const result = await cli(setTeam('dry-change', '--bitbucket-cloud-user', 'carol', '--dry-run'), 'y\n');
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'setting team: dry-change\n\nrole owner:\n  users:\n  - bitbucket-cloud:carol\n\n  groups:\n    none\n' +
        '\nchanges:\n\nrole owner:\n- bitbucket-cloud user bob\n+ bitbucket-cloud user carol\n',
    });
    expect(writes('dry-change')).toBe(before);
    expect(await serverTeam('dry-change')).toEqual({ owner: { users: ['bitbucket-cloud:bob'], groups: [] } });
  });

  test('a new team: shows its entries and "new team", creates nothing (with --non-interactive too)', async () => {
    const result = await cli(
      setTeam(
        'dry-new',
        '--local-user',
        'admin',
        '--bitbucket-cloud-team',
        'acme',
        '--dry-run',
        '--non-interactive',
      ),
    );
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'setting team: dry-new\n\nrole owner:\n  users:\n  - local:admin\n\n  groups:\n  - bitbucket-cloud:acme\n' +
        '\nnew team\n',
    });
    expect(await serverTeam('dry-new')).toBeNull();
    expect(writes('dry-new')).toBe(0);
  });

  test('the same config: "no changes"', async () => {
    await node.putTeam('dry-same', { owner: { users: ['bob'] } });
    const result = await cli(setTeam('dry-same', '--bitbucket-cloud-user', 'bob', '--dry-run'));
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/\nno changes\n$/);
  });

  test('local validation still comes first: nothing reaches the server', async () => {
    expect(await cli(setTeam('dry-invalid', '--dry-run'))).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: auth config for the team does not have users and groups configured\n',
    });
  });
});

describe('get-team -o yaml | set-team -c', () => {
  test('the YAML of a team with local and Bitbucket entries, read back: "no changes", nothing written', async () => {
    await node.putTeam('round-trip', MIXED);
    const got = await cli(['-t', 'ci', 'get-team', '-n', 'round-trip', '-o', 'yaml']);
    expect(got).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        'roles:',
        '- name: owner',
        '  bitbucket-cloud:',
        '    users: ["alice"]',
        '  local:',
        '    users: ["admin"]',
        '- name: member',
        '  bitbucket-cloud:',
        '    users: ["{aaaa-1}"]',
        '    teams: ["acme/devs"]',
        '  local:',
        '    users: ["carol"]',
        '- name: viewer',
        '  bitbucket-cloud:',
        '    teams: ["acme"]',
        '',
      ].join('\n'),
    });
    const before = writes('round-trip');
    const applied = await cli(setTeam('round-trip', '-c', rolesFile(got.stdout)));
    expect(applied).toMatchObject({ code: 0, stderr: '' });
    expect(applied.stdout).toMatch(/\nno changes\n$/);
    expect(applied.stdout).not.toContain('apply team configuration');
    expect(writes('round-trip')).toBe(before);
    expect(await serverTeam('round-trip')).toEqual(MIXED_STORED);
  });

  test('through stdin (-c -) with --non-interactive: "no changes"', async () => {
    await node.putTeam('round-stdin', MIXED);
    const got = await cli(['-t', 'ci', 'gt', '-n', 'round-stdin', '--output', 'yaml']);
    expect(got.code).toBe(0);
    const before = writes('round-stdin');
    const applied = await cli(setTeam('round-stdin', '-c', '-', '--non-interactive'), got.stdout);
    expect(applied).toMatchObject({ code: 0, stderr: '' });
    expect(applied.stdout).toMatch(/^setting team: round-stdin\n/);
    expect(applied.stdout).toMatch(/\nno changes\n$/);
    expect(writes('round-stdin')).toBe(before);
    expect(await serverTeam('round-stdin')).toEqual(MIXED_STORED);
  });

  test('-c - applies a changed YAML from stdin, and --dry-run shows it', async () => {
    await node.putTeam('stdin-change', { owner: { users: ['bob'] } });
    const yaml = 'roles:\n- name: owner\n  local:\n    users: [admin]\n';
    const dry = await cli(setTeam('stdin-change', '-c', '-', '--dry-run'), yaml);
    expect(dry).toMatchObject({ code: 0, stderr: '' });
    expect(dry.stdout).toMatch(
      /\nchanges:\n\nrole owner:\n- bitbucket-cloud user bob\n\+ local user admin\n$/,
    );
    expect(await serverTeam('stdin-change')).toEqual({
      owner: { users: ['bitbucket-cloud:bob'], groups: [] },
    });
    const applied = await cli(setTeam('stdin-change', '-c', '-', '--non-interactive'), yaml);
    expect(applied.stdout).toMatch(/team updated\n$/);
    expect(await serverTeam('stdin-change')).toEqual({ owner: { users: ['local:admin'], groups: [] } });
  });

  test('-c - without --non-interactive or --dry-run is refused: stdin cannot also answer the prompt', async () => {
    await node.putTeam('stdin-refused', { owner: { users: ['bob'] } });
    const before = writes('stdin-refused');
    const result = await cli(
      setTeam('stdin-refused', '-c', '-'),
      'roles:\n- name: owner\n  local:\n    users: [admin]\ny\n',
    );
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'error: -c - reads the roles YAML from stdin, so stdin cannot answer the confirmation: add --non-interactive to apply it, or --dry-run to only show the changes\n',
    });
    expect(writes('stdin-refused')).toBe(before);
  });

  test('a bad YAML on stdin is named as <stdin>', async () => {
    const result = await cli(setTeam('stdin-bad', '-c', '-', '--dry-run'), 'roles: [\n');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: invalid roles YAML in '<stdin>': /);
  });

  test('entries of a connector this sky does not know: left out of the YAML, with a warning on stderr', async () => {
    // Written by a node that has a github connector (stored configs keep such entries as saved).
    const log = createLogger('silent');
    const store = createRedisStore(testRedis(), node.prefix, log, 3600);
    try {
      await new TeamStore(store.teams).put(
        'foreign',
        parseTeamAuth(
          { owner: { users: ['bitbucket-cloud:alice', 'github:alice'], groups: ['github:acme'] } },
          { stored: true },
        ),
      );
    } finally {
      await store.close();
    }
    const got = await cli(['-t', 'ci', 'get-team', '-n', 'foreign', '-o', 'yaml']);
    expect(got).toEqual({
      code: 0,
      stdout: 'roles:\n- name: owner\n  bitbucket-cloud:\n    users: ["alice"]\n',
      stderr:
        'warning: role owner: user github:alice is left out of this roles YAML\n' +
        'warning: role owner: group github:acme is left out of this roles YAML\n',
    });
    const dry = await cli(setTeam('foreign', '-c', rolesFile(got.stdout), '--dry-run'));
    expect(dry.stdout).toMatch(/\nchanges:\n\nrole owner:\n- user github:alice\n- group github:acme\n$/);
  });
});

describe('get-team -o', () => {
  test('json is -j; the default table is unchanged; another value is refused', async () => {
    await node.putTeam('outputs', { owner: { users: ['bob'] } });
    const asJson = await cli(['-t', 'ci', 'get-team', '-n', 'outputs', '-o', 'json']);
    expect(asJson).toEqual(await cli(['-t', 'ci', 'get-team', '-n', 'outputs', '-j']));
    expect(JSON.parse(asJson.stdout)).toEqual({
      name: 'outputs',
      auth: { owner: { users: ['bitbucket-cloud:bob'], groups: [] } },
    });
    expect(await cli(['-t', 'ci', 'get-team', '-n', 'outputs'])).toEqual({
      code: 0,
      stderr: '',
      stdout: 'outputs/owner  bitbucket-cloud:bob (username)  none\n',
    });
    expect(await cli(['-t', 'ci', 'get-team', '-n', 'outputs', '-o', 'toml'])).toEqual({
      code: 1,
      stdout: '',
      stderr: "error: invalid value 'toml' for -o/--output: use yaml or json\n",
    });
    expect(await cli(['-t', 'ci', 'get-team', '-n', 'outputs', '-j', '-o', 'yaml'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: -j/--json cannot be combined with -o yaml\n',
    });
  });
});

const ROOT = path.resolve(__dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = path.join(ROOT, 'lib', 'cli', 'main.ts');

/**
 * `sky …` in a pseudo-terminal, as inTerminal (./cli.ts) runs it, answering `answer` once `prompt`
 * shows: what the terminal showed (with the echoed answer) and the exit code.
 */
function answeredInTerminal(
  args: string[],
  prompt: string,
  answer: string,
): Promise<{ code: number; output: string }> {
  const command = [TSX, MAIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qefc', command, '/dev/null'], {
    cwd: ROOT,
    env: { ...process.env, SKYRC: skyrc, NO_COLOR: '1' },
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  return waitFor(() => (output.includes(prompt) ? true : null), `the prompt in: ${output}`, 20_000)
    .then(() => {
      child.stdin.write(answer);
      return exited;
    })
    .then((code) => ({ code, output: output.replace(/\r\n/g, '\n') }))
    .finally(() => child.kill());
}

test('in a terminal: the diff shows before the prompt; answering n bails out and leaves the team unchanged', async () => {
  await node.putTeam('pty-team', { owner: { users: ['bob'] }, viewer: { groups: ['acme'] } });
  const before = writes('pty-team');
  const { code, output } = await answeredInTerminal(
    setTeam('pty-team', '--bitbucket-cloud-user', 'bob', '--local-user', 'admin'),
    'apply team configuration? [yN]: ',
    'n\n',
  );
  expect(code).toBe(1);
  expect(output).toContain(
    '\nchanges:\n\nrole owner:\n+ local user admin\n\nrole viewer (removed):\n- bitbucket-cloud team acme\n' +
      '\napply team configuration? [yN]: n\nbailing out\n',
  );
  expect(output.indexOf('changes:')).toBeLessThan(output.indexOf('apply team configuration?'));
  expect(writes('pty-team')).toBe(before);
  expect(await serverTeam('pty-team')).toEqual({
    owner: { users: ['bitbucket-cloud:bob'], groups: [] },
    viewer: { users: [], groups: ['bitbucket-cloud:acme'] },
  });
}, 30_000);
