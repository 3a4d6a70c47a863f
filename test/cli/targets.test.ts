import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { startNode, type TestNode } from '../harness/node';
import { inTerminal, loginByPaste, readSkyrc, sky, spoiled, tempSkyrc } from './cli';

/** fly's target commands and completion (SPEC §9), the real binary in a pseudo-terminal. */
jest.setTimeout(60_000);

let fake: FakeBitbucket;
let node: TestNode;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

test('status: logged in, then a refused token says to log in again', async () => {
  const skyrc = tempSkyrc();
  const token = await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
  const ok = await inTerminal(skyrc, ['-t', 'ci', 'status']);
  expect(ok).toMatchObject({ code: 0, output: 'logged in successfully\n' });
  const text = readSkyrc(skyrc);
  const saved = text.targets['ci'];
  if (!saved?.token) throw new Error('no token saved');
  saved.token.value = spoiled(token);
  writeFileSync(skyrc, JSON.stringify(text));
  const refused = await inTerminal(skyrc, ['-t', 'ci', 'status']);
  expect(refused.code).toBe(1);
  expect(refused.output).toBe(
    'please login again.\n\ntoken validation failed with error: the node refuses the token (revoked, or signed with a key it no longer knows)\n',
  );
  // status never refreshes: the token is as it was.
  expect(readSkyrc(skyrc).targets['ci']?.token?.value).toBe(spoiled(token));
});

test('rename-target, edit-target, delete-target and delete-target -a', async () => {
  const skyrc = tempSkyrc();
  await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
  await loginByPaste(skyrc, 'other', node.url, fake, 'alice');
  const renamed = await inTerminal(skyrc, ['-t', 'ci', 'rename-target', '-n', 'prod']);
  expect(renamed).toMatchObject({ code: 0, output: "Target 'ci' has been renamed to 'prod'\n" });
  expect(Object.keys(readSkyrc(skyrc).targets).sort()).toEqual(['other', 'prod']);
  const clash = await inTerminal(skyrc, ['-t', 'prod', 'rename-target', '-n', 'other']);
  expect(clash.code).toBe(1);
  expect(clash.output).toBe("error: a target called 'other' already exists: delete it first\n");

  // A new team keeps the token; a new URL forgets it (another node issued it).
  const team = await inTerminal(skyrc, ['-t', 'prod', 'edit-target', '-n', 'builders', '--target-name', 'p']);
  expect(team).toMatchObject({ code: 0, output: 'Updated target: p\n' });
  expect(readSkyrc(skyrc).targets['p']).toMatchObject({ api: node.url, team: 'builders' });
  expect(readSkyrc(skyrc).targets['p']?.token).toBeDefined();
  const moved = await inTerminal(skyrc, ['-t', 'p', 'edit-target', '-c', 'https://ci.example.com/']);
  expect(moved.code).toBe(0);
  expect(readSkyrc(skyrc).targets['p']).toEqual({ api: 'https://ci.example.com', team: 'builders' });
  const bad = await inTerminal(skyrc, ['-t', 'p', 'edit-target', '-c', 'ftp://x']);
  expect(bad.output).toBe(
    "error: invalid URL 'ftp://x': give the web node's http(s) URL, e.g. https://ci.example.com\n",
  );
  const nothing = await inTerminal(skyrc, ['-t', 'p', 'edit-target']);
  expect(nothing.output).toBe('error: nothing to edit: give --target-name, --concourse-url or --team-name\n');

  const deleted = await inTerminal(skyrc, ['-t', 'p', 'delete-target']);
  expect(deleted).toMatchObject({ code: 0, output: 'deleted target: p\n' });
  expect(Object.keys(readSkyrc(skyrc).targets)).toEqual(['other']);
  const unknown = await inTerminal(skyrc, ['-t', 'p', 'delete-target']);
  expect(unknown).toMatchObject({ code: 1, output: 'error: unknown target: p\n' });
  const all = await inTerminal(skyrc, ['delete-target', '-a']);
  expect(all).toMatchObject({ code: 0, output: 'deleted all targets\n' });
  expect(readSkyrc(skyrc).targets).toEqual({});
});

test('teams -j prints JSON', async () => {
  const skyrc = tempSkyrc();
  await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
  const result = await sky(skyrc, ['-t', 'ci', 'teams', '-j']);
  expect(result.code).toBe(0);
  expect(JSON.parse(result.stdout)).toEqual(
    expect.arrayContaining([expect.objectContaining({ name: 'main' })]),
  );
});

test('completion --shell bash completes commands, flags and saved targets in a real bash', async () => {
  const skyrc = tempSkyrc();
  await loginByPaste(skyrc, 'ci-prod', node.url, fake, 'alice');
  const script = (await sky(skyrc, ['completion', '--shell', 'bash'])).stdout;
  const file = path.join(os.tmpdir(), `sky-completion-${process.pid}.bash`);
  writeFileSync(file, script);
  // `sky` for the script's target lookup is this checkout's CLI.
  const bin = path.join(os.tmpdir(), `sky-bin-${process.pid}`);
  execFileSync('mkdir', ['-p', bin]);
  writeFileSync(
    path.join(bin, 'sky'),
    `#!/bin/sh\nexec ${path.resolve(__dirname, '..', '..', 'node_modules', '.bin', 'tsx')} ${path.resolve(__dirname, '..', '..', 'lib', 'cli', 'main.ts')} "$@"\n`,
    { mode: 0o755 },
  );
  const complete = (words: string[]): string[] =>
    execFileSync(
      'bash',
      [
        '-c',
        `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _sky; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      { env: { ...process.env, SKYRC: skyrc, PATH: `${bin}:${process.env['PATH'] ?? ''}` } },
    )
      .toString()
      .split('\n')
      .filter((l) => l !== '');
  expect(complete(['sky', 'del'])).toEqual(['delete-target']);
  expect(complete(['sky', '-t', 'ci-prod', 'rename-target', '--n'])).toEqual(['--new-name']);
  expect(complete(['sky', '-t', 'ci-'])).toEqual(['ci-prod']);
  for (const shell of ['zsh', 'fish']) {
    const other = await inTerminal(skyrc, ['completion', '--shell', shell]);
    expect(other.code).toBe(0);
    expect(other.output).toContain(
      shell === 'zsh' ? 'bashcompinit' : 'complete -c sky -n __fish_use_subcommand -a login',
    );
  }
  const wrong = await inTerminal(skyrc, ['completion', '--shell', 'tcsh']);
  expect(wrong).toMatchObject({ code: 1, output: "error: unknown shell 'tcsh': use bash, zsh or fish\n" });
});
