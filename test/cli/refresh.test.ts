import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { updateTargets } from '../../lib/cli/skyrc';
import { identityOf } from '../../lib/http/guards';
import { FakeBitbucket } from '../../lib/testing';
import { issueToken, loadSigningKey, type SkyClaims } from '../../lib/tokens';
import { startNode, type TestNode } from '../harness/node';
import { deliver, modeOf, printedLoginUrl, readSkyrc, sky, spoiled, start, tempSkyrc } from './cli';
import { followFlyLogin } from '../harness/login';

/**
 * Token expiry (SPEC §8, §9): on a 401 every command redeems the refresh token at POST /sky/token,
 * saves the rotated tokens and retries once; the refresh token is the one the fly success page handed
 * over at login.
 */
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
let fake: FakeBitbucket;
let node: TestNode;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake, options: { signingKey } });
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

/** `sky -t ci login` through the port hand-off; the target ends up with a refresh token. */
async function login(skyrc: string): Promise<void> {
  const running = start(skyrc, ['-t', 'ci', 'login', '-c', node.url]);
  const { url, port } = await printedLoginUrl(running);
  await deliver(port, await followFlyLogin(url, fake, 'alice'));
  expect((await running.done).code).toBe(0);
  expect(readSkyrc(skyrc).targets['ci']?.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/);
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
  // Rotation: the refresh token the CLI used is spent.
  const reuse = await fetch(`${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=refresh_token&refresh_token=${before?.refresh_token ?? ''}`,
  });
  expect(reuse.status).toBe(400);
  expect(((await reuse.json()) as { error: string }).error).toBe('invalid_grant');
});

test('past its token’s expiry the CLI keeps working by refreshing, with no browser', async () => {
  const skyrc = tempSkyrc();
  await login(skyrc);
  // The saved token, as it is once its time is up: the same claims, signed by the node's key, expired 2 h ago.
  await updateTargets(skyrc, (targets) => {
    const target = targets['ci'];
    if (!target?.token) return;
    const claims = JSON.parse(
      Buffer.from(target.token.value.split('.')[1] ?? '', 'base64url').toString(),
    ) as SkyClaims;
    const expired = issueToken(loadSigningKey(signingKey), {
      issuer: claims.iss,
      audience: claims.aud,
      durationMs: 3600_000,
      identity: identityOf(claims),
      teams: claims.teams,
      isAdmin: claims.is_admin,
      familyId: claims.sid,
      now: Date.now() - 3 * 3600_000,
    });
    target.token = { type: 'bearer', value: expired.token };
  });
  const expiredToken = readSkyrc(skyrc).targets['ci']?.token?.value ?? '';
  expect(await status(expiredToken)).toBe(401);
  fake.resetRequests();

  for (const argv of [['userinfo'], ['teams'], ['get-team', '-n', 'main']]) {
    const result = await sky(skyrc, ['-t', 'ci', ...argv]);
    expect({ argv, code: result.code, stderr: result.stderr }).toEqual({ argv, code: 0, stderr: '' });
  }
  const saved = readSkyrc(skyrc).targets['ci']?.token?.value ?? '';
  expect(saved).not.toBe(expiredToken);
  expect(await status(saved)).toBe(200);
  // No browser: nothing went through Bitbucket's authorize page.
  expect(fake.count('/site/oauth2/authorize')).toBe(0);
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

test('no refresh token: straight to "log in again"', async () => {
  const skyrc = tempSkyrc();
  await login(skyrc);
  await spoil(skyrc);
  await updateTargets(skyrc, (targets) => {
    delete targets['ci']?.refresh_token;
  });
  const result = await sky(skyrc, ['-t', 'ci', 'userinfo']);
  expect(result).toMatchObject({ code: 1, stderr: expect.stringContaining('sky -t ci login') });
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
