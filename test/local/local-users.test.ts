import { Writable } from 'node:stream';
import bcrypt from 'bcryptjs';
import { createLogger } from '../../lib/log';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { loginAs, tokenRequest } from '../harness/login';
import { metricSample } from '../harness/metrics';
import { startNode, testRedis, type TestNode } from '../harness/node';
import { Keys } from '../../lib/store/keys';
import { connectRedis } from '../../lib/store/redis';
import { sky as cli, tempSkyrc } from '../cli/cli';

/**
 * Local users (issue #16): Concourse's CONCOURSE_ADD_LOCAL_USER, the break-glass login that works while
 * Bitbucket Cloud is down. Real HTTP, real Redis, the fake Bitbucket (answering 503 where it says so).
 */
jest.setTimeout(60_000);

const ADMIN_PASSWORD = 'correct horse battery staple';
const CAROL_PASSWORD = 'pässwörd ✓ 日本';
let fake: FakeBitbucket;
let node: TestNode;
const lines: string[] = [];

/** A log destination that keeps every line it is given. */
const sinkInto = (into: string[]): Writable =>
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      into.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({
    fake,
    options: {
      // admin in plain text (start-up warns), carol as a bcrypt hash (a unicode password).
      localUsers: [`admin:${ADMIN_PASSWORD}`, `carol:${bcrypt.hashSync(CAROL_PASSWORD, 4)}`],
      mainTeam: { users: ['alice'], localUsers: ['admin'] },
      logger: createLogger('debug', sinkInto(lines)),
    },
  });
});
afterAll(async () => {
  await node?.close();
  await fake?.stop();
});
afterEach(() => fake.clearFaults());

/** The login page's password form, posted as a browser posts it (same origin). */
async function formLogin(
  browser: Browser,
  username: string,
  password: string,
  extra: Record<string, string> = {},
) {
  return browser.request(`${node.url}/sky/login/local`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: node.url },
    body: new URLSearchParams({ username, password, ...extra }).toString(),
  });
}

const passwordGrant = (username: string, password: string) =>
  tokenRequest(node.url, { grant_type: 'password', username, password });

test('the login page lists both connectors: a Bitbucket Cloud button and a username/password form', async () => {
  const page = await new Browser().request(`${node.url}/sky/login`);
  expect(page.status).toBe(200);
  expect(page.body).toContain('Log in with Bitbucket Cloud');
  expect(page.body).toMatch(/<form class="password" method="post" action="[^"]*\/sky\/login\/local">/);
  expect(page.body).toContain('name="password" type="password"');
  // Picking Bitbucket goes to Bitbucket as before.
  const chosen = await new Browser().request(`${node.url}/sky/login?connector=bitbucket-cloud`);
  expect(chosen.status).toBe(302);
  expect(chosen.location).toContain('/site/oauth2/authorize');
  const unknown = await new Browser().request(`${node.url}/sky/login?connector=github`);
  expect(unknown.status).toBe(400);
  expect(unknown.body).toContain('connector must be one of bitbucket-cloud, local');
});

test('plain-text passwords get a start-up warning that names the user, never the password', () => {
  const warning = lines.find((l) => l.includes('in plain text'));
  // It names where the password is (here the option; CONCOURSE_ADD_LOCAL_USER when the variable gives it).
  expect(warning).toContain('option localUsers gives the password of admin in plain text');
  expect(warning).not.toContain('carol');
  expect(lines.join('\n')).not.toContain(ADMIN_PASSWORD);
});

test('team main naming a local user nobody configured, or one of a connector the node does not offer, gets a start-up warning', async () => {
  expect(lines.join('\n')).not.toContain('team main names');
  const logged: string[] = [];
  const sink = sinkInto(logged);
  const typo = await startNode({
    fake,
    options: {
      localUsers: [`admin:${bcrypt.hashSync(ADMIN_PASSWORD, 4)}`],
      mainTeam: { users: ['alice'], localUsers: ['admn'] },
      logger: createLogger('warn', sink),
    },
  });
  await typo.close();
  expect(logged.join('')).toContain(
    "team main names a local user 'admn' (mainTeam.localUsers / CONCOURSE_MAIN_TEAM_LOCAL_USER), who is not configured: nobody can log in as that owner",
  );
  logged.length = 0;
  const noLocal = await startNode({
    fake,
    options: { mainTeam: { users: ['alice'], localUsers: ['admin'] }, logger: createLogger('warn', sink) },
  });
  await noLocal.close();
  expect(logged.join('')).toContain(
    "team main names a local user 'admin' (mainTeam.localUsers / CONCOURSE_MAIN_TEAM_LOCAL_USER), but this node does not offer logins as a local user",
  );
});

test("a local user in no team reads the page in sky's words, not Bitbucket's; the footer names every connector", async () => {
  const page = await formLogin(new Browser(), 'carol', CAROL_PASSWORD);
  expect(page.status).toBe(403);
  expect(page.body).toContain('You are not a member of any team');
  expect(page.body).toContain('You logged in as carol, and that account is not a member of any team');
  expect(page.body).toContain('Ask a team owner to add your account or one of your groups to a team');
  expect(page.body).not.toMatch(/workspace/i);
  expect(page.body).toContain('Logins through Bitbucket Cloud or a local user · teams and roles by sky');
  // The CLI's password login says the same (a refresh says "no longer", test/http/refresh.test.ts).
  expect(await passwordGrant('carol', CAROL_PASSWORD)).toEqual({
    status: 400,
    body: {
      error: 'invalid_grant',
      error_description:
        'You logged in as carol, and that account is not a member of any team on this CI server.',
    },
  });
});

test('with Bitbucket Cloud answering 503 to everything, a local admin logs in (browser and CLI) and changes a team', async () => {
  fake.addFault({ status: 503, match: 'all' });
  const browser = new Browser();
  const landed = await formLogin(browser, 'admin', ADMIN_PASSWORD);
  expect(landed.status).toBe(302);
  expect(new URL(landed.location ?? '').searchParams.get('csrf_token')).toBeTruthy();
  expect(browser.jar.has('skymarshal_auth')).toBe(true);
  const user = await browser.request(`${node.url}/api/v1/user`);
  expect(JSON.parse(user.body)).toMatchObject({
    user_id: 'admin',
    is_admin: true,
    teams: { main: ['owner'] },
  });

  // sky login -u -p, then set-team through the CLI.
  const skyrc = tempSkyrc();
  const login = await cli(skyrc, ['-t', 'ci', 'login', '-c', node.url, '-u', 'admin', '-p', ADMIN_PASSWORD]);
  expect(login).toMatchObject({ code: 0 });
  expect(login.stdout).toContain('target saved');
  const wrong = await cli(skyrc, ['-t', 'x', 'login', '-c', node.url, '-u', 'admin', '-p', 'wrong']);
  expect(wrong).toMatchObject({
    code: 1,
    stderr: expect.stringContaining(
      `error: ${node.url} did not log you in with the username and password: Wrong username or password.`,
    ),
  });
  const set = await cli(skyrc, [
    '-t',
    'ci',
    'set-team',
    '-n',
    'break-glass',
    '--local-user',
    'carol',
    '--bitbucket-cloud-user',
    'bob',
    '--non-interactive',
  ]);
  expect(set).toMatchObject({ code: 0 });
  expect(set.stdout).toContain('team created');
  // The CLI asks for the password when -p is not given.
  const prompted = await cli(
    tempSkyrc(),
    ['-t', 'x', 'login', '-c', node.url, '-u', 'carol', '-n', 'break-glass'],
    `${CAROL_PASSWORD}\n`,
  );
  expect(prompted).toMatchObject({ code: 0 });
});

test('a team with local: and bitbucket-cloud: entries round-trips through the API, Redis and the CLI; each matches only its own', async () => {
  const admin = (await passwordGrant('admin', ADMIN_PASSWORD)).body['access_token'] as string;
  const auth = {
    owner: { users: ['local:carol', 'bitbucket-cloud:alice'], groups: [] },
    viewer: { users: ['local:alice', 'bitbucket-cloud:carol'], groups: ['bitbucket-cloud:elsewhere'] },
  };
  const put = await fetch(`${node.url}/api/v1/teams/mixed`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ auth }),
  });
  expect(put.status).toBe(201);
  const got = (await (
    await fetch(`${node.url}/api/v1/teams/mixed`, { headers: { authorization: `Bearer ${admin}` } })
  ).json()) as { auth: unknown };
  expect(got.auth).toEqual(auth);
  const redis = connectRedis(testRedis());
  try {
    const stored = await redis.hget(new Keys(node.prefix).teamConfigs, 'mixed');
    expect(JSON.parse(stored ?? 'null')).toEqual(auth);
  } finally {
    redis.disconnect();
  }
  const skyrc = tempSkyrc();
  await cli(skyrc, ['-t', 'ci', 'login', '-c', node.url, '-u', 'admin', '-p', ADMIN_PASSWORD]);
  const shown = await cli(skyrc, ['-t', 'ci', 'get-team', '-n', 'mixed', '--json']);
  expect((JSON.parse(shown.stdout) as { auth: unknown }).auth).toEqual(auth);

  // carol the local user is an owner, Bitbucket's alice an owner; local:alice and bitbucket-cloud:carol
  // are other people (viewers).
  const carol = (await passwordGrant('carol', CAROL_PASSWORD)).body['access_token'] as string;
  const carolTeams = (await (
    await fetch(`${node.url}/api/v1/user`, { headers: { authorization: `Bearer ${carol}` } })
  ).json()) as { teams: Record<string, string[]> };
  expect(carolTeams.teams['mixed']).toEqual(['owner']);
  const alice = await loginAs(node.url, fake, 'alice', { pick: true });
  const aliceTeams = (await (await fetch(`${node.url}/api/v1/user`, { headers: alice.bearer })).json()) as {
    teams: Record<string, string[]>;
  };
  expect(aliceTeams.teams['mixed']).toEqual(['owner']);
});

test('wrong password, unknown user, 1 MB password, unicode, empty: one answer, in bounded time, and no password logged', async () => {
  const tries: [string, string][] = [
    ['admin', 'wrong'],
    ['nobody', ADMIN_PASSWORD],
    ['admin', 'x'.repeat(1024 * 1024)],
    ['admin', 'pässwörd ✓'],
    ['carol', CAROL_PASSWORD.normalize('NFD') + 'x'],
    ['admin', ''],
    ['', ''],
  ];
  for (const [username, password] of tries) {
    const started = Date.now();
    const grant = await passwordGrant(username, password);
    const form = await formLogin(new Browser(), username, password);
    const ms = Date.now() - started;
    const context = `${username.slice(0, 10)}/${password.slice(0, 10)}`;
    expect({ context, status: grant.status, body: grant.body }).toEqual({
      context,
      status: 400,
      body: { error: 'invalid_grant', error_description: 'Wrong username or password.' },
    });
    expect({ context, status: form.status }).toEqual({ context, status: 401 });
    expect(form.body).toContain('Wrong username or password.');
    expect({ context, bounded: ms < 5_000 }).toEqual({ context, bounded: true });
  }
  const logged = lines.join('\n');
  for (const [, password] of tries)
    if (password.length > 3) expect(logged).not.toContain(password.slice(0, 40));
  expect(logged).not.toContain(CAROL_PASSWORD);
});

test('the form refused: the page offers the form again in plain words; a body that is not a form is named, not counted', async () => {
  const page = await formLogin(new Browser(), 'erin', 'wrong');
  expect(page.status).toBe(401);
  expect(page.body).toContain('This CI server signs you in with a local user. Your teams');
  for (const [type, body] of [
    ['application/json', JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD })],
    ['text/plain', `username=admin&password=${ADMIN_PASSWORD}`],
  ]) {
    const sent = await new Browser().request(`${node.url}/sky/login/local`, {
      method: 'POST',
      headers: { 'content-type': type ?? '', origin: node.url },
      body: body ?? '',
    });
    expect({ type, status: sent.status }).toEqual({ type, status: 400 });
    expect(sent.body).toContain('Send the login form as application/x-www-form-urlencoded');
  }
  // The landing page, with both connectors, names both.
  const landing = await new Browser().request(`${node.url}/sky/login`);
  expect(landing.body).toContain('signs you in with Bitbucket Cloud or a local user.');
});

test('failed passwords are limited per username (whatever the address) and the form refuses other sites', async () => {
  const passwordLimited = (): Promise<number> =>
    metricSample(node, 'sky_rate_limited_total', { limit: 'password' });
  expect(await passwordLimited()).toBe(0);
  for (let i = 0; i < 10; i++) expect((await passwordGrant('dave', `guess-${i}`)).status).toBe(400);
  const limited = await passwordGrant('dave', 'guess-10');
  expect(limited.status).toBe(429);
  expect(String(limited.body['error_description'])).toContain('Too many failed logins for this username');
  // The metrics tell this limit from the per-address ones.
  expect(await passwordLimited()).toBe(1);
  // Another username is not held back by dave's failures.
  expect((await passwordGrant('admin', ADMIN_PASSWORD)).status).toBe(200);
  const crossSite = await new Browser().request(`${node.url}/sky/login/local`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
    body: new URLSearchParams({ username: 'admin', password: ADMIN_PASSWORD }).toString(),
  });
  expect(crossSite.status).toBe(403);
  // Fetch Metadata decides when a browser sends it (sky's no-referrer pages make the Origin "null").
  const fromElsewhere = await new Browser().request(`${node.url}/sky/login/local`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'sec-fetch-site': 'cross-site',
      origin: 'null',
    },
    body: new URLSearchParams({ username: 'admin', password: ADMIN_PASSWORD }).toString(),
  });
  expect(fromElsewhere.status).toBe(403);
});

test('a refresh of a local login checks the user is still configured; there is no upstream', async () => {
  const first = await passwordGrant('admin', ADMIN_PASSWORD);
  expect(first.status).toBe(200);
  fake.addFault({ status: 503, match: 'all' });
  const before = fake.requests.length;
  const refreshed = await tokenRequest(node.url, {
    grant_type: 'refresh_token',
    refresh_token: String(first.body['refresh_token']),
  });
  expect(refreshed.status).toBe(200);
  expect(fake.requests.length).toBe(before);
});
