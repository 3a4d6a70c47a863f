import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { updateTargets } from '../../lib/cli/skyrc';
import { FakeBitbucket } from '../../lib/testing';
import { startNode, type TestNode } from '../harness/node';
import {
  deliver,
  followLogin,
  modeOf,
  pageToken,
  printedLoginUrl,
  readSkyrc,
  sky,
  spoiled,
  start,
  tempSkyrc,
} from './cli';

/**
 * Token expiry (SPEC §8, §9): on a 401 every command redeems the refresh token at POST /sky/token,
 * saves the rotated tokens and retries once. While the node has no /sky/token of its own, a stand-in
 * with the same contract answers it (a host route behind sky's router); once sky serves /sky/token,
 * the stand-in is never reached and these tests run against the real endpoint and the refresh token
 * the fly success page hands over.
 */
let fake: FakeBitbucket;
let node: TestNode;
let standInMode = false;
const standIn = { calls: 0, grants: new Map<string, string>() };

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({
    fake,
    routes: (app) => {
      app.post('/sky/token', express.urlencoded({ extended: false }), async (req, res) => {
        standIn.calls++;
        res.set('x-test-stand-in', 'sky-token');
        const { grant_type: grantType, refresh_token: presented } = req.body as Record<
          string,
          string | undefined
        >;
        const user = presented ? standIn.grants.get(presented) : undefined;
        if (grantType !== 'refresh_token' || !user) {
          res
            .status(400)
            .json({ error: 'invalid_grant', error_description: 'the refresh token is not valid' });
          return;
        }
        standIn.grants.delete(presented ?? '');
        const rotated = `rt-${randomBytes(8).toString('hex')}`;
        standIn.grants.set(rotated, user);
        const access = (await pageToken(node.url, fake, user)).slice('bearer '.length);
        res.json({ access_token: access, token_type: 'bearer', expires_in: 86400, refresh_token: rotated });
      });
    },
  });
  const probe = await fetch(`${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=refresh_token&refresh_token=probe',
  });
  standInMode = probe.headers.get('x-test-stand-in') === 'sky-token';
  await probe.body?.cancel();
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});
beforeEach(() => {
  standIn.calls = 0;
});

/** `sky -t ci login` through the port hand-off; the target ends up with a refresh token. */
async function login(skyrc: string): Promise<void> {
  const running = start(skyrc, ['-t', 'ci', 'login', '-c', node.url]);
  const { url, port } = await printedLoginUrl(running);
  await deliver(port, await followLogin(url, fake, 'alice'));
  expect((await running.done).code).toBe(0);
  if (standInMode) {
    const seeded = `rt-${randomBytes(8).toString('hex')}`;
    standIn.grants.set(seeded, 'alice');
    await updateTargets(skyrc, (targets) => {
      if (targets['ci']) targets['ci'].refresh_token = seeded;
    });
  }
  // With sky's own /sky/token, the success page must have handed a refresh token to the CLI.
  expect(readSkyrc(skyrc).targets['ci']?.refresh_token).toEqual(expect.any(String));
}

/** Makes the saved access token one the node refuses with 401. */
async function spoil(skyrc: string): Promise<string> {
  let bad = '';
  await updateTargets(skyrc, (targets) => {
    const target = targets['ci'];
    if (target?.token) target.token = { type: 'bearer', value: (bad = spoiled(target.token.value)) };
  });
  return bad;
}

async function status(jwt: string): Promise<number> {
  return (await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${jwt}` } })).status;
}

test('a 401 redeems the refresh token, saves the rotated pair with mode 0600, and retries once', async () => {
  const skyrc = tempSkyrc();
  await login(skyrc);
  const bad = await spoil(skyrc);
  const before = readSkyrc(skyrc).targets['ci'];

  const result = await sky(skyrc, ['-t', 'ci', 'userinfo', '--json']);
  expect(result).toMatchObject({ code: 0, stderr: '' });
  expect(JSON.parse(result.stdout)).toMatchObject({ user_name: 'alice', is_admin: true });

  const after = readSkyrc(skyrc).targets['ci'];
  expect(after?.token?.type).toBe('bearer');
  expect(after?.token?.value).not.toBe(bad);
  expect(await status(after?.token?.value ?? '')).toBe(200);
  expect(after?.refresh_token).toEqual(expect.any(String));
  expect(after?.refresh_token).not.toBe(before?.refresh_token);
  expect(modeOf(skyrc)).toBe(0o600);
  if (standInMode) expect(standIn.calls).toBe(1);
});

test('every command takes the same path: teams, set-team, get-team, destroy-team', async () => {
  const skyrc = tempSkyrc();
  await login(skyrc);
  const runs = [
    ['teams'],
    ['set-team', '-n', 'refreshed', '--bitbucket-cloud-user', 'bob', '--non-interactive'],
    ['get-team', '-n', 'refreshed'],
    ['destroy-team', '-n', 'refreshed', '--non-interactive'],
  ];
  for (const argv of runs) {
    const refreshBefore = readSkyrc(skyrc).targets['ci']?.refresh_token;
    await spoil(skyrc);
    const result = await sky(skyrc, ['-t', 'ci', ...argv]);
    expect({ argv, code: result.code, stderr: result.stderr }).toEqual({ argv, code: 0, stderr: '' });
    expect(readSkyrc(skyrc).targets['ci']?.refresh_token).not.toBe(refreshBefore);
  }
  if (standInMode) expect(standIn.calls).toBe(runs.length);
});

test('a refresh token the node refuses (invalid_grant): fly’s "log in again", and it is forgotten', async () => {
  const skyrc = tempSkyrc();
  await login(skyrc);
  const bad = await spoil(skyrc);
  await updateTargets(skyrc, (targets) => {
    if (targets['ci']) targets['ci'].refresh_token = 'not-a-refresh-token';
  });
  expect(await sky(skyrc, ['-t', 'ci', 'teams'])).toEqual({
    code: 1,
    stdout: '',
    stderr: 'not authorized. run the following to log in again:\n\n    sky -t ci login\n',
  });
  const saved = readSkyrc(skyrc).targets['ci'];
  expect(saved?.refresh_token).toBeUndefined();
  expect(saved?.token?.value).toBe(bad);
  expect(modeOf(skyrc)).toBe(0o600);
});

test('no refresh token: no call to /sky/token, straight to "log in again"', async () => {
  const skyrc = tempSkyrc();
  await login(skyrc);
  await spoil(skyrc);
  await updateTargets(skyrc, (targets) => {
    delete targets['ci']?.refresh_token;
  });
  const result = await sky(skyrc, ['-t', 'ci', 'userinfo']);
  expect(result).toMatchObject({ code: 1, stderr: expect.stringContaining('sky -t ci login') });
  if (standInMode) expect(standIn.calls).toBe(0);
});

test('the retry happens once: a node that refuses the refreshed token too ends the command', async () => {
  // A node double that refuses every token: only it can show that the CLI does not loop.
  const calls: string[] = [];
  const server = createServer((req, res) => {
    calls.push(`${req.method} ${req.url}`);
    res.setHeader('content-type', 'application/json');
    if (req.url === '/sky/token') {
      res.end(
        JSON.stringify({
          access_token: 'a.b.c',
          token_type: 'bearer',
          expires_in: 60,
          refresh_token: 'next',
        }),
      );
    } else {
      res.statusCode = 401;
      res.end(JSON.stringify({ error: 'not_authorized', message: 'not authorized' }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const skyrc = tempSkyrc();
    await updateTargets(skyrc, (targets) => {
      targets['ci'] = {
        api,
        team: 'main',
        token: { type: 'bearer', value: 'x.y.z' },
        refresh_token: 'first',
      };
    });
    const result = await sky(skyrc, ['-t', 'ci', 'teams']);
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr: 'not authorized. run the following to log in again:\n\n    sky -t ci login\n',
    });
    expect(calls).toEqual(['GET /api/v1/teams', 'POST /sky/token', 'GET /api/v1/teams']);
    expect(readSkyrc(skyrc).targets['ci']).toMatchObject({
      token: { value: 'a.b.c' },
      refresh_token: 'next',
    });
  } finally {
    server.close();
  }
});
