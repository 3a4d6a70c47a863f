import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { resolveConfig } from '../../lib/config';
import { createLogger } from '../../lib/log';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { startNode, type TestNode } from '../harness/node';
import { loginByPaste, sky, tempSkyrc } from '../cli/cli';

/**
 * The messages a person and an operator meet (README "Messages"), each asserted word for word: what
 * happened, what to do, and whose account it was.
 */
let fake: FakeBitbucket;
let node: TestNode;
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
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

const lead = (html: string): string => /<p class="lead">([^<]*)<\/p>/.exec(html)?.[1] ?? '';

test('"not a member of any team" names the account that tried, on the page and in the log line', async () => {
  fake.consentAs('dave');
  const hops = await new Browser().follow(`${node.url}/sky/login`, 3);
  const page = hops[2];
  expect(page?.status).toBe(403);
  expect(lead(page?.body ?? '')).toBe(
    'You logged in to Bitbucket Cloud as dave (Dave Drifter), and that account is not a member of any team on this CI server.',
  );
  const requestId = /<code>([^<]+)<\/code>/.exec(page?.body ?? '')?.[1];
  const line = lines.find((l) => l['error'] === 'not_in_any_team');
  expect(line).toMatchObject({
    reqId: requestId,
    sub: expect.stringMatching(/^bitbucket-cloud:\{/) as unknown,
  });
});

test('a page that is not there offers the start page, not "Log in again"', async () => {
  const res = await fetch(`${node.url}/sky/nowhere`, { headers: { accept: 'text/html' } });
  expect(res.status).toBe(404);
  const body = await res.text();
  expect(body).not.toContain('Log in again');
  expect(body).toContain('>Go to the start page</a>');
  // A page where a login helps still offers it.
  const expired = await fetch(`${node.url}/sky/issuer/callback?code=x&state=y`);
  expect(await expired.text()).toContain('>Log in again</a>');
});

test('a denied consent says so in sky’s words, without the provider’s free text', async () => {
  fake.deny();
  try {
    const hops = await new Browser().follow(`${node.url}/sky/login`, 3);
    expect(lead(hops[2]?.body ?? '')).toBe(
      'You did not grant this CI server access to your Bitbucket Cloud account.',
    );
  } finally {
    fake.consentAs('alice');
  }
});

test('configuration messages: a missing key says how to make one; LOG_LEVEL lists the levels; YAML errors say where', () => {
  const problem = (env: Record<string, string>): string => {
    try {
      resolveConfig({ env });
    } catch (err) {
      return (err as Error).message;
    }
    return '';
  };
  expect(problem({ CONCOURSE_SESSION_SIGNING_KEY: '/nonexistent/key.pem' })).toBe(
    "invalid sky configuration: CONCOURSE_SESSION_SIGNING_KEY: cannot read '/nonexistent/key.pem': ENOENT (no such file): make one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out /nonexistent/key.pem",
  );
  expect(problem({ LOG_LEVEL: 'loud' })).toBe(
    "invalid sky configuration: LOG_LEVEL: unknown log level 'loud' (use fatal, error, warn, info, debug, trace or silent)",
  );
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-messages-'));
  const dex = path.join(dir, 'dex.yml');
  writeFileSync(dex, 'connectors: a: b: c\n');
  expect(problem({ SKY_CONFIG: dex })).toBe(
    `SKY_CONFIG: '${dex}' is not valid YAML: Nested mappings are not allowed in compact mappings (line 1, column 13)`,
  );
});

test('set-team -c names the file whose YAML is wrong', async () => {
  const skyrc = tempSkyrc();
  await loginByPaste(skyrc, 'ci', node.url, fake, 'alice');
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'sky-roles-')), 'roles.yml');
  writeFileSync(file, 'roles:\n  - [\n');
  const result = await sky(skyrc, ['-t', 'ci', 'set-team', '-n', 'x', '-c', file, '--non-interactive']);
  expect(result.code).toBe(1);
  expect(result.stderr).toBe(
    `error: invalid roles YAML in '${file}': Flow sequence in block collection must be sufficiently indented and end with a ] (line 3, column 1)\n`,
  );
});
