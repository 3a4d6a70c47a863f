import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { FakeBitbucket } from '../../lib/testing';
import { freePort } from '../harness/global-setup';
import { startNode } from '../harness/node';
import { inTerminal, loginByPaste, readSkyrc, tempSkyrc } from './cli';

/**
 * The CLI where the node is not (SPEC §9): `sky login` asks <url>/api/v1/info first and fails in
 * seconds; `logout` forgets the token even when the node cannot be reached; `logout -a` goes on past a
 * failure. The real binary runs in a pseudo-terminal (util-linux `script`), as a person meets it.
 */
jest.setTimeout(60_000);

let fake: FakeBitbucket;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
afterAll(() => fake.stop());

test('sky login -c <a URL where nothing listens> fails in < 5 s, naming the URL', async () => {
  const url = `http://127.0.0.1:${await freePort()}`;
  const result = await inTerminal(tempSkyrc(), ['login', '-c', url, '-t', 'ci']);
  expect(result.code).toBe(1);
  expect(result.ms).toBeLessThan(5_000);
  expect(result.output).toContain(`${url}/api/v1/info`);
  expect(result.output).not.toContain('navigate to the following URL');
});

test('sky login -c <a web server that is not a CI node> fails at once, saying what answered', async () => {
  const server: Server = createServer((_req, res) => res.writeHead(404).end('not here'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    const result = await inTerminal(tempSkyrc(), [
      'login',
      '-c',
      `http://127.0.0.1:${port}/wrong`,
      '-t',
      'ci',
    ]);
    expect(result.code).toBe(1);
    expect(result.output).toContain(
      `error: http://127.0.0.1:${port}/wrong is not a CI server's web node: GET http://127.0.0.1:${port}/wrong/api/v1/info answered 404 (check the URL given with -c/--concourse-url)`,
    );
  } finally {
    server.close();
  }
});

test('logout of a stopped node forgets the token and says it stays valid there; logout -a goes on past failures', async () => {
  const skyrc = tempSkyrc();
  const up = await startNode({ fake });
  const down = await startNode({ fake });
  // A node that answers 500 to everything once a token is saved for it: logout there fails.
  const broken = await startNode({ fake });
  try {
    await loginByPaste(skyrc, 'up', up.url, fake, 'alice');
    await loginByPaste(skyrc, 'down', down.url, fake, 'alice');
    await loginByPaste(skyrc, 'down2', down.url, fake, 'alice');
  } finally {
    await down.close();
  }
  const failing: Server = createServer((_req, res) => res.writeHead(500).end());
  const port = await freePort();
  await broken.close();
  await new Promise<void>((resolve) => failing.listen(port, '127.0.0.1', resolve));
  try {
    await loginByPaste(skyrc, 'broken', up.url, fake, 'alice');
    writeFileSync(
      skyrc,
      readFileSync(skyrc, 'utf8').replace(
        new RegExp(`(broken:\\n\\s+api: )${up.url.replace(/\./g, '\\.')}`),
        `$1http://127.0.0.1:${port}`,
      ),
    );
    expect(readSkyrc(skyrc).targets['broken']?.api).toBe(`http://127.0.0.1:${port}`);

    const one = await inTerminal(skyrc, ['-t', 'down', 'logout']);
    expect(one.code).toBe(0);
    expect(one.output).toMatch(
      new RegExp(
        `warning: could not reach ${down.url.replace(/\./g, '\\.')} to revoke the token; it was removed from this machine but stays valid there until it expires \\(.+ UTC\\)\\n`,
      ),
    );
    expect(one.output).toContain('logged out of target: down\n');
    expect(readSkyrc(skyrc).targets['down']?.token).toBeUndefined();

    const all = await inTerminal(skyrc, ['logout', '-a']);
    expect(all.output).toContain('warning: down2: could not reach');
    expect(all.output).toMatch(/error: broken: .*500/);
    expect(all.output).toContain('could not log out of 1 target\n');
    expect(all.code).toBe(1);
    const targets = readSkyrc(skyrc).targets;
    expect(targets['up']?.token).toBeUndefined();
    expect(targets['down2']?.token).toBeUndefined();
    // The failed one keeps its token, so the logout can be tried again.
    expect(targets['broken']?.token).toBeDefined();
  } finally {
    failing.close();
    await up.close();
  }
});
