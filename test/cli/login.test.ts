import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { freePort } from '../harness/global-setup';
import { startNode, type TestNode } from '../harness/node';
import {
  deliver,
  modeOf,
  pageToken,
  printedLoginUrl,
  readSkyrc,
  sky,
  start,
  tempSkyrc,
  waitFor,
} from './cli';
import { approveFly, cliLoginParams, followFlyLogin } from '../harness/login';

/** `sky login` (SPEC §9): the fly_port hand-off, a pasted token, and what lands in ~/.skyrc. */
let fake: FakeBitbucket;
let node: TestNode;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  await node.putTeam('builders', { owner: { users: ['bob'] } });
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

const userOf = async (jwt: string): Promise<Record<string, unknown>> => {
  const res = await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${jwt}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
};

describe('the browser hands a login code to the local port (RFC 8252)', () => {
  test('prints fly’s prompts and a confirmation code, redeems the code with its verifier, saves the target 0600', async () => {
    const skyrc = tempSkyrc();
    const running = start(skyrc, ['login', '-c', `${node.url}/`, '-t', 'ci']);
    const { url, port } = await printedLoginUrl(running);
    const query = new URL(url).searchParams;
    expect(url.startsWith(`${node.url}/login?fly_port=${port}&code_challenge=`)).toBe(true);
    expect(query.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(query.get('code_challenge_method')).toBe('S256');
    expect(query.get('nonce')).toMatch(/^[A-Za-z0-9_-]{16,64}$/);
    expect(running.stdout.text).toContain(
      "logging in to team 'main'\n\nnavigate to the following URL in your browser:",
    );
    const confirmation = /confirmation code: ([0-9A-Z]{4}-[0-9A-Z]{4})/.exec(running.stdout.text)?.[1];
    await waitFor(
      () => (running.stdout.text.includes('or enter token manually (input hidden): ') ? true : null),
      'prompt',
    );

    const page = await followFlyLogin(url, fake, 'alice');
    // The page shows the code the terminal printed, and has sent nothing yet.
    expect(page.html).toContain(`<code id="confirmation">${confirmation}</code>`);
    const handOff = await deliver(port, page);
    expect(handOff.status).toBe(200);
    expect(handOff.headers.get('access-control-allow-origin')).toBe(node.url);
    const result = await running.done;

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/target saved\n$/);
    const saved = readSkyrc(skyrc).targets['ci'];
    expect(saved).toMatchObject({ api: node.url, team: 'main', token: { type: 'bearer' } });
    expect(saved?.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/);
    expect(modeOf(skyrc)).toBe(0o600);
    expect(await userOf(saved?.token?.value ?? '')).toMatchObject({ user_name: 'alice', is_admin: true });
    // The listener is gone once the code arrived.
    await expect(fetch(`http://127.0.0.1:${port}/?code=x`)).rejects.toThrow();
  });

  test('deliveries without the nonce, with another nonce, or of a bare token are refused: nothing is saved', async () => {
    const skyrc = tempSkyrc();
    const running = start(skyrc, ['-t', 'ci', 'login', '-c', node.url]);
    const { url, port } = await printedLoginUrl(running);
    // Another login's code (an attacker's own, say), offered without and with a wrong nonce.
    const other = await followFlyLogin(`${node.url}/sky/login?${cliLoginParams(port).query}`, fake, 'bob');
    const code = (await approveFly(other)).value;
    const nonce = new URL(url).searchParams.get('nonce') ?? '';
    for (const query of [
      `code=${code}`,
      `code=${code}&nonce=${'A'.repeat(nonce.length)}`,
      `code=${code}&nonce=`,
      `token=${encodeURIComponent(await pageToken(node.url, fake, 'bob'))}`,
      `token=bearer%20a%20b`,
    ]) {
      expect((await fetch(`http://127.0.0.1:${port}/?${query}`)).status).toBe(400);
    }
    expect((await fetch(`http://127.0.0.1:${port}/favicon.ico`)).status).toBe(400);
    expect(() => readFileSync(skyrc)).toThrow();
    const preflight = await fetch(`http://127.0.0.1:${port}/`, { method: 'OPTIONS' });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(node.url);
    // The CLI is still waiting, and takes its own login.
    await deliver(port, await followFlyLogin(url, fake, 'alice'));
    expect((await running.done).code).toBe(0);
    expect(await userOf(readSkyrc(skyrc).targets['ci']?.token?.value ?? '')).toMatchObject({
      user_name: 'alice',
    });
  });

  test('the login code pasted at the prompt is redeemed', async () => {
    const skyrc = tempSkyrc();
    const running = start(skyrc, ['-t', 'ci', 'login', '-c', node.url]);
    const { url } = await printedLoginUrl(running);
    const delivery = await approveFly(await followFlyLogin(url, fake, 'alice'));
    expect(delivery.kind).toBe('code');
    running.stdin.write(`${delivery.value}\n`);
    expect((await running.done).code).toBe(0);
    expect(readSkyrc(skyrc).targets['ci']?.refresh_token).toBeTruthy();
  });

  test('--port picks the local port; -n picks the team, which the user must be on', async () => {
    const skyrc = tempSkyrc();
    // A port known to be free now (a fixed one can be taken by any other process's ephemeral port).
    const wanted = await freePort();
    const running = start(skyrc, [
      '-t',
      'b',
      'login',
      '-c',
      node.url,
      '-n',
      'builders',
      '--port',
      String(wanted),
    ]);
    const { url, port } = await printedLoginUrl(running);
    expect(port).toBe(wanted);
    expect(running.stdout.text).toContain("logging in to team 'builders'");
    await deliver(port, await followFlyLogin(url, fake, 'bob'));
    expect((await running.done).code).toBe(0);
    expect(readSkyrc(skyrc).targets['b']).toMatchObject({ team: 'builders' });
  });

  test('a user who is not on the team is told so and nothing is saved', async () => {
    const skyrc = tempSkyrc();
    const token = await pageToken(node.url, fake, 'bob');
    const result = await sky(skyrc, ['-t', 'ci', 'login', '-c', node.url, '-n', 'main'], `${token}\n`);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("error: you are not a member of 'main' or the team does not exist\n");
    expect(() => readFileSync(skyrc)).toThrow();
  });
});

describe('a pasted token', () => {
  test.each([
    ['with the bearer prefix', (t: string) => t],
    ['without it', (t: string) => t.slice('bearer '.length)],
  ])('is accepted %s', async (_label, shape) => {
    const skyrc = tempSkyrc();
    const token = await pageToken(node.url, fake, 'alice');
    const result = await sky(skyrc, ['-t', 'ci', 'login', '-c', node.url], `${shape(token)}\n`);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('or enter token manually (input hidden): \ntarget saved\n');
    expect(result.stdout).not.toContain(token.slice('bearer '.length));
    expect(readSkyrc(skyrc).targets['ci']?.token).toEqual({
      type: 'bearer',
      value: token.slice('bearer '.length),
    });
  });

  test('a malformed line gets fly’s hint and the prompt again', async () => {
    const skyrc = tempSkyrc();
    const token = await pageToken(node.url, fake, 'alice');
    const result = await sky(skyrc, ['-t', 'ci', 'login', '-c', node.url], `not a token at all\n${token}\n`);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("token must be of the format 'TYPE VALUE', e.g. 'Bearer ...'");
    expect(result.stdout.match(/or enter token manually/g)).toHaveLength(2);
  });

  test('a token the server refuses is not saved', async () => {
    const skyrc = tempSkyrc();
    const result = await sky(skyrc, ['-t', 'ci', 'login', '-c', node.url], 'bearer not.a.jwt\n');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `error: ${node.url} did not accept the token: it is invalid, expired or revoked\n`,
    );
    expect(() => readFileSync(skyrc)).toThrow();
  });
});

describe('.skyrc', () => {
  test('a looser existing file is tightened to 0600; other targets and unknown keys survive', async () => {
    const skyrc = tempSkyrc();
    writeFileSync(
      skyrc,
      'targets:\n  other:\n    api: https://ci.example.com\n    team: main\n    insecure: true\n',
      { mode: 0o644 },
    );
    chmodSync(skyrc, 0o644);
    const token = await pageToken(node.url, fake, 'alice');
    expect((await sky(skyrc, ['-t', 'ci', 'login', '-c', node.url], `${token}\n`)).code).toBe(0);
    expect(modeOf(skyrc)).toBe(0o600);
    expect(readSkyrc(skyrc).targets['other']).toEqual({
      api: 'https://ci.example.com',
      team: 'main',
      insecure: true,
    });
  });

  test('`sky -t ci login` without -c reuses the saved URL and team, and replaces the token', async () => {
    const skyrc = tempSkyrc();
    const first = await pageToken(node.url, fake, 'bob');
    await sky(skyrc, ['-t', 'ci', 'login', '-c', node.url, '-n', 'builders'], `${first}\n`);
    const running = start(skyrc, ['-t', 'ci', 'login']);
    const { url, port } = await printedLoginUrl(running);
    expect(url.startsWith(`${node.url}/login?fly_port=`)).toBe(true);
    expect(running.stdout.text).toContain("logging in to team 'builders'");
    await deliver(port, await followFlyLogin(url, fake, 'bob'));
    expect((await running.done).code).toBe(0);
    const saved = readSkyrc(skyrc).targets['ci'];
    expect(saved).toMatchObject({ api: node.url, team: 'builders' });
    expect(saved?.token?.value).not.toBe(first.slice('bearer '.length));
    expect(await userOf(saved?.token?.value ?? '')).toMatchObject({ user_name: 'bob' });
  });

  test('SKYRC names the file; without it HOME decides', async () => {
    const skyrc = tempSkyrc();
    const token = await pageToken(node.url, fake, 'alice');
    const home = path.dirname(skyrc);
    const result = await sky('', ['-t', 'ci', 'login', '-c', node.url], `${token}\n`, {
      HOME: home,
      SKYRC: '',
    });
    expect(result.code).toBe(0);
    expect(readSkyrc(path.join(home, '.skyrc')).targets['ci']?.api).toBe(node.url);
  });

  test('a broken .skyrc is named in the error', async () => {
    const skyrc = tempSkyrc();
    writeFileSync(skyrc, 'targets: [oops');
    const result = await sky(skyrc, ['-t', 'ci', 'teams']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^error: in the file '${skyrc}': `));
  });
});

describe('bad flags: a clear message on stderr, exit 1, no stack trace', () => {
  test.each([
    [
      ['login', '-c', 'ci.example.com', '-t', 'ci'],
      "error: invalid URL 'ci.example.com': give the web node's http(s) URL, e.g. https://ci.example.com\n",
    ],
    [
      ['login', '-c', 'ftp://ci.example.com', '-t', 'ci'],
      "error: invalid URL 'ftp://ci.example.com': give the web node's http(s) URL, e.g. https://ci.example.com\n",
    ],
    [
      ['login', '-c', 'https://u:p@ci.example.com', '-t', 'ci'],
      "error: invalid URL 'https://u:p@ci.example.com': give the web node's http(s) URL, e.g. https://ci.example.com\n",
    ],
    [
      ['login', '-c', 'https://ci.example.com'],
      'error: name for the target must be specified (--target/-t)\n',
    ],
    [['-t', 'nope', 'login'], 'error: unknown target: nope\n'],
    [
      ['-t', 'ci', 'login', '-c', 'https://ci.example.com', '--port', '80'],
      "error: invalid --port '80': use a port between 1024 and 65535\n",
    ],
    [
      ['-t', 'ci', 'login', '-c', 'https://ci.example.com', '--port', 'abc'],
      "error: invalid --port 'abc': use a port between 1024 and 65535\n",
    ],
    [
      ['-t', 'ci', 'login', '-c', 'https://ci.example.com', '-n', 'Bad/Team'],
      "error: invalid team name 'Bad/Team': use 1-64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit\n",
    ],
    [
      ['-t', 'ci', 'login', '--frobnicate'],
      "error: unknown flag `--frobnicate' for sky login; see sky login --help\n",
    ],
    [['-t', 'ci', 'login', 'extra'], 'error: unexpected argument [extra]\n'],
    [['-t'], "error: expected argument for flag `-t, --target'\n"],
  ])('sky %j', async (argv, message) => {
    const result = await sky(tempSkyrc(), argv);
    expect(result).toEqual({ code: 1, stdout: '', stderr: message });
  });

  test('a port already in use is named', async () => {
    const skyrc = tempSkyrc();
    const running = start(skyrc, ['-t', 'ci', 'login', '-c', node.url]);
    const { url, port } = await printedLoginUrl(running);
    const clash = await sky(tempSkyrc(), ['-t', 'ci', 'login', '-c', node.url, '--port', String(port)]);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toMatch(
      new RegExp(`^error: could not listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`),
    );
    await deliver(port, await followFlyLogin(url, fake, 'alice'));
    expect((await running.done).code).toBe(0);
  });

  test('an unreachable server gets fly’s "could not reach" message', async () => {
    const skyrc = tempSkyrc();
    const closed = `http://127.0.0.1:${await freePort()}`;
    const result = await sky(skyrc, ['-t', 'ci', 'login', '-c', closed], 'bearer a.b.c\n');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^could not reach the CI server called ci at http:\/\/127\.0\.0\.1:\d+\/api\/v1\/info:\n\n {4}.*ECONNREFUSED/,
    );
  });

  test('-b opens the URL with $BROWSER', async () => {
    const skyrc = tempSkyrc();
    const opened = path.join(path.dirname(skyrc), 'opened');
    const browser = path.join(path.dirname(skyrc), 'browser.sh');
    writeFileSync(browser, `#!/bin/sh\necho "$1" > '${opened}'\n`, { mode: 0o755 });
    const running = start(skyrc, ['-t', 'ci', 'login', '-c', node.url, '-b'], { BROWSER: browser });
    const { url, port } = await printedLoginUrl(running);
    const seen = await waitFor(() => {
      try {
        return readFileSync(opened, 'utf8').trim() || null;
      } catch {
        return null;
      }
    }, 'the browser script');
    expect(seen).toBe(url);
    await deliver(port, await followFlyLogin(url, fake, 'alice'));
    expect((await running.done).code).toBe(0);
  });
});
