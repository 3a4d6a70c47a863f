import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { startNode, type TestNode } from '../harness/node';
import { deliver, modeOf, readSkyrc, tempSkyrc, waitFor } from './cli';
import { followFlyLogin } from '../harness/login';

/** The real `sky` binary as a child process: shebang entry, argv, stdin, exit codes, a clean exit. */
jest.setTimeout(60_000);

const ROOT = path.resolve(__dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = path.join(ROOT, 'lib', 'cli', 'main.ts');

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

interface Child {
  process: ChildProcessWithoutNullStreams;
  stdout: () => string;
  exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function spawnSky(skyrc: string, argv: string[]): Child {
  const child = spawn(TSX, [MAIN, ...argv], {
    cwd: ROOT,
    env: { ...process.env, SKYRC: skyrc, NO_COLOR: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { process: child, stdout: () => stdout, exit };
}

test('login through the port hand-off, then userinfo and an interactive set-team, as a real process', async () => {
  const skyrc = tempSkyrc();
  const login = spawnSky(skyrc, ['login', '-c', node.url, '-t', 'ci']);
  const match = await waitFor(
    () => /(http\S+\/login\?fly_port=(\d+)\S*)/.exec(login.stdout()),
    'the login URL',
    20_000,
  );
  await deliver(Number(match[2]), await followFlyLogin(match[1] ?? '', fake, 'alice'));
  // stdin stays open: the process must still exit once the browser delivered.
  expect(await login.exit).toMatchObject({ code: 0, stderr: '' });
  expect(readSkyrc(skyrc).targets['ci']).toMatchObject({ api: node.url, team: 'main' });
  expect(modeOf(skyrc)).toBe(0o600);

  const userinfo = await spawnSky(skyrc, ['-t', 'ci', 'userinfo']).exit;
  expect(userinfo).toEqual({ code: 0, stderr: '', stdout: 'alice  main/owner\n' });

  const setTeam = spawnSky(skyrc, [
    '-t',
    'ci',
    'set-team',
    '-n',
    'binary-team',
    '--bitbucket-cloud-team',
    'acme',
  ]);
  setTeam.process.stdin.end('y\n');
  const applied = await setTeam.exit;
  expect(applied).toMatchObject({ code: 0, stderr: '' });
  expect(applied.stdout).toContain('apply team configuration? [yN]: team created\n');
});

test('errors: a message on stderr, exit code 1, no stack trace', async () => {
  const result = await spawnSky(tempSkyrc(), ['-t', 'nope', 'teams']).exit;
  expect(result).toEqual({ code: 1, stdout: '', stderr: 'error: unknown target: nope\n' });
});
