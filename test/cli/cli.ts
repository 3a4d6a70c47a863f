import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { parse as parseYaml } from 'yaml';
import { run } from '../../lib/cli/main';
import type { FakeBitbucket } from '../../lib/testing';
import { approveFly, followFlyLogin, type FlyPage } from '../harness/login';

/** A stream that keeps what was written, for asserting on stdout and stderr. */
export class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Running {
  stdin: PassThrough;
  stdout: Capture;
  stderr: Capture;
  done: Promise<CliResult>;
}

/** A fresh directory and the path of a .skyrc inside it (the file itself does not exist yet). */
export function tempSkyrc(): string {
  return path.join(mkdtempSync(path.join(os.tmpdir(), 'sky-cli-')), '.skyrc');
}

/** Starts the CLI in-process with SKYRC pointing at `skyrc`; stdin stays open until the test ends it. */
export function start(skyrc: string, argv: string[], env: Record<string, string> = {}): Running {
  const stdin = new PassThrough();
  const stdout = new Capture();
  const stderr = new Capture();
  const done = run(argv, { stdin, stdout, stderr, env: { SKYRC: skyrc, ...env } }).then((code) => ({
    code,
    stdout: stdout.text,
    stderr: stderr.text,
  }));
  return { stdin, stdout, stderr, done };
}

/** Runs the CLI to the end with `input` on stdin (then end of input). */
export function sky(
  skyrc: string,
  argv: string[],
  input = '',
  env: Record<string, string> = {},
): Promise<CliResult> {
  const running = start(skyrc, argv, env);
  running.stdin.end(input);
  return running.done;
}

/** Polls until `find` returns a value (the CLI printing its login URL, say). */
export async function waitFor<T>(find: () => T | null | undefined, what: string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== null && found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The login URL the CLI printed, and the local port inside it. */
export async function printedLoginUrl(running: Running): Promise<{ url: string; port: number }> {
  const match = await waitFor(
    () => /^ {2}(http\S+\/login\?fly_port=(\d+)\S*)$/m.exec(running.stdout.text),
    `the login URL in: ${running.stdout.text}`,
  );
  return { url: match[1] ?? '', port: Number(match[2]) };
}

/**
 * What the person and the page do: click "Log in the sky CLI", then the page's script hands the login
 * code with the CLI's nonce (from the page's form) to the CLI's port.
 */
export async function deliver(port: number, page: FlyPage): Promise<Response> {
  const delivery = await approveFly(page);
  const query = new URLSearchParams({ code: delivery.value, nonce: page.fields['nonce'] ?? '' });
  return fetch(`http://127.0.0.1:${port}/?${query}`);
}

/** A token for `user` as the fly page hands it to Concourse's fly after the click ("bearer <jwt>"). */
export async function pageToken(baseUrl: string, fake: FakeBitbucket, user: string): Promise<string> {
  return (await approveFly(await followFlyLogin(`${baseUrl}/sky/login?fly_port=65000`, fake, user))).value;
}

/** `sky -t <target> login -c <url>` completed by pasting the user's token: a logged-in target. */
export async function loginByPaste(
  skyrc: string,
  target: string,
  baseUrl: string,
  fake: FakeBitbucket,
  user: string,
  team = 'main',
): Promise<string> {
  const token = await pageToken(baseUrl, fake, user);
  const result = await sky(skyrc, ['-t', target, 'login', '-c', baseUrl, '-n', team], `${token}\n`);
  if (result.code !== 0) throw new Error(`login as ${user} failed: ${result.stderr}`);
  return token.slice('bearer '.length);
}

export interface SavedTarget {
  api: string;
  team: string;
  token?: { type: string; value: string };
  refresh_token?: string;
  insecure?: boolean;
  ca_cert?: string;
}

/** The .skyrc as YAML, parsed. */
export function readSkyrc(skyrc: string): { targets: Record<string, SavedTarget> } {
  return parseYaml(readFileSync(skyrc, 'utf8')) as { targets: Record<string, SavedTarget> };
}

export function modeOf(file: string): number {
  return statSync(file).mode & 0o777;
}

/** A JWT whose signature no longer matches: the server answers it with 401, as it would an expired one. */
export function spoiled(jwt: string): string {
  const [header = '', payload = '', signature = ''] = jwt.split('.');
  return `${header}.${payload}.${'A'.repeat(signature.length)}`;
}

const ROOT = path.resolve(__dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = path.join(ROOT, 'lib', 'cli', 'main.ts');

/** `sky …` in a pseudo-terminal: what it printed (stdout and stderr, as a terminal shows them), its exit, its time. */
export function inTerminal(
  skyrc: string,
  args: string[],
): Promise<{ code: number; output: string; ms: number }> {
  const started = Date.now();
  const command = [TSX, MAIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    execFile(
      'script',
      ['-qefc', command, '/dev/null'],
      { cwd: ROOT, env: { ...process.env, SKYRC: skyrc, NO_COLOR: '1' }, timeout: 30_000 },
      (err, stdout) => {
        const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
        resolve({ code, output: stdout.replace(/\r\n/g, '\n'), ms: Date.now() - started });
      },
    );
  });
}
