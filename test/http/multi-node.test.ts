import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { freePort } from '../harness/global-setup';
import { loginAs, type LoggedIn } from '../harness/login';
import { testPrefix, testRedisEnv } from '../harness/node';
import { fakeBitbucketEnv, spawnWebNode, type NodeProcess } from '../harness/process';

/**
 * Several web nodes behave as one (SPEC §2, §3, §6.3): two `npm start` processes on one Redis and one
 * signing key. A token of one works on the other, and a change made through one is enforced by the
 * other within a second, through Redis pub/sub.
 */
let fake: FakeBitbucket;
let a: NodeProcess;
let b: NodeProcess;
let alice: LoggedIn;
let bob: LoggedIn;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  const portA = await freePort();
  const env = {
    ...testRedisEnv(),
    SKY_KEY_PREFIX: testPrefix(),
    // One public URL for both (as behind a load balancer); the test reaches each node on its own port.
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${portA}`,
    // One signing key (in the env object) for both.
    ...fakeBitbucketEnv(fake),
  };
  [a, b] = await Promise.all([spawnWebNode(env, portA), spawnWebNode(env)]);
  alice = await loginAs(a.url, fake, 'alice');
  await setTeam(a, 'shared', { owner: { users: ['bob'] } });
  bob = await loginAs(a.url, fake, 'bob');
}, 60_000);
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await fake.stop();
});

async function setTeam(node: NodeProcess, team: string, auth: object): Promise<void> {
  const res = await fetch(`${node.url}/api/v1/teams/${team}`, {
    method: 'PUT',
    headers: { ...alice.bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth }),
  });
  if (res.status !== 200 && res.status !== 201) throw new Error(`set-team answered ${res.status}`);
}

/** Polls until `status` is what a request answers; returns how long it took. */
async function msUntil(expected: number, request: () => Promise<Response>, limitMs = 1000): Promise<number> {
  const started = Date.now();
  for (;;) {
    const res = await request();
    if (res.status === expected) return Date.now() - started;
    if (Date.now() - started > limitMs) throw new Error(`still ${res.status} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a token issued by A works on B, by Bearer and by cookie', async () => {
  const user = await fetch(`${b.url}/api/v1/user`, { headers: bob.bearer });
  expect(user.status).toBe(200);
  expect(((await user.json()) as { teams: object }).teams).toEqual({ shared: ['owner'] });
  const cookie = await bob.browser.request(`${b.url}/api/v1/teams/shared`);
  expect(cookie.status).toBe(200);
});

test('a login begun on A completes on B (the state lives in the shared session store)', async () => {
  fake.consentAs('bob');
  const browser = new Browser();
  const [start, authorize] = await browser.follow(`${a.url}/sky/login`, 2);
  expect(start?.status).toBe(302);
  const callback = new URL(authorize?.location ?? '');
  const onB = await browser.request(`${b.url}${callback.pathname}${callback.search}`);
  expect(onB.status).toBe(302);
  expect(onB.setCookies.some((c) => c.startsWith('skymarshal_auth='))).toBe(true);
});

test('a team change made on A is enforced on B within 1 s, on a token already held', async () => {
  const canWrite = () =>
    fetch(`${b.url}/api/v1/teams/shared`, {
      method: 'PUT',
      headers: { ...bob.bearer, 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { owner: { users: ['bob'] } } }),
    });
  expect((await canWrite()).status).toBe(200); // B has the config cached now

  await setTeam(a, 'shared', { owner: { users: ['carol'] }, viewer: { users: ['bob'] } });
  const demoted = await msUntil(403, canWrite);
  expect(demoted).toBeLessThan(1000);
  expect((await fetch(`${b.url}/api/v1/teams/shared`, { headers: bob.bearer })).status).toBe(200);

  // Removing the user takes their access away, though their token is still valid.
  await setTeam(a, 'shared', { owner: { users: ['carol'] } });
  const removed = await msUntil(403, () => fetch(`${b.url}/api/v1/teams/shared`, { headers: bob.bearer }));
  expect(removed).toBeLessThan(1000);
  expect((await fetch(`${b.url}/api/v1/user`, { headers: bob.bearer })).status).toBe(200);

  // And giving it back works the same way.
  await setTeam(a, 'shared', { owner: { users: ['carol'] }, member: { users: ['bob'] } });
  expect(
    await msUntil(200, () => fetch(`${b.url}/api/v1/teams/shared`, { headers: bob.bearer })),
  ).toBeLessThan(1000);
});

test('a team deleted on B is gone on A within 1 s', async () => {
  await setTeam(b, 'short-lived', { owner: { users: ['bob'] } });
  expect((await fetch(`${a.url}/api/v1/teams/short-lived`, { headers: bob.bearer })).status).toBe(200);
  const res = await fetch(`${b.url}/api/v1/teams/short-lived`, { method: 'DELETE', headers: alice.bearer });
  expect(res.status).toBe(204);
  expect(
    await msUntil(403, () => fetch(`${a.url}/api/v1/teams/short-lived`, { headers: bob.bearer })),
  ).toBeLessThan(1000);
});

test('logout on B revokes the token on A within 1 s', async () => {
  const aliceAgain = await loginAs(a.url, fake, 'alice');
  expect((await fetch(`${a.url}/api/v1/user`, { headers: aliceAgain.bearer })).status).toBe(200);
  expect((await fetch(`${b.url}/sky/logout`, { method: 'POST', headers: aliceAgain.bearer })).status).toBe(
    204,
  );
  expect(
    await msUntil(401, () => fetch(`${a.url}/api/v1/user`, { headers: aliceAgain.bearer })),
  ).toBeLessThan(1000);
});
