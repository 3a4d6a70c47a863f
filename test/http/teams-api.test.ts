import { FakeBitbucket } from '../../lib/testing';
import { loginAs, type LoggedIn } from '../harness/login';
import { startNode, type TestNode } from '../harness/node';

/** The teams API of SPEC §4.7 with Concourse's status codes and messages, one test each. */
let fake: FakeBitbucket;
let node: TestNode;
let alice: LoggedIn; // admin (owner of main)
let bob: LoggedIn; // owner of team "builders"
let carol: LoggedIn; // viewer of "builders"

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  await node.putTeam('builders', { owner: { users: ['bob'] }, viewer: { groups: ['acme'] } });
  alice = await loginAs(node.url, fake, 'alice');
  bob = await loginAs(node.url, fake, 'bob');
  carol = await loginAs(node.url, fake, 'carol');
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

function put(
  who: LoggedIn | null,
  team: string,
  body: unknown,
  type = 'application/json',
): Promise<Response> {
  return fetch(`${node.url}/api/v1/teams/${team}`, {
    method: 'PUT',
    headers: { ...(who?.bearer ?? {}), 'content-type': type },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
const get = (who: LoggedIn | null, path: string): Promise<Response> =>
  fetch(`${node.url}${path}`, { headers: who?.bearer ?? {} });
const del = (who: LoggedIn | null, team: string): Promise<Response> =>
  fetch(`${node.url}/api/v1/teams/${team}`, { method: 'DELETE', headers: who?.bearer ?? {} });

const validAuth = { owner: { users: ['bob'] }, member: { groups: ['widgets'] } };

describe('PUT /api/v1/teams/:team', () => {
  test('201 when the admin creates a team; entries come back normalised', async () => {
    const res = await put(alice, 'fresh', {
      auth: { owner: { users: [' Bob '], groups: ['bitbucket-cloud:ACME'] } },
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({
      name: 'fresh',
      auth: { owner: { users: ['bitbucket-cloud:bob'], groups: ['bitbucket-cloud:acme'] } },
    });
    expect((await get(alice, '/api/v1/teams/fresh')).status).toBe(200);
  });

  test('200 when the admin updates a team', async () => {
    await put(alice, 'upd', { auth: validAuth });
    const res = await put(alice, 'upd', { auth: { viewer: { users: ['dave'] }, owner: { users: ['bob'] } } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { auth: object }).auth).toEqual({
      viewer: { users: ['bitbucket-cloud:dave'], groups: [] },
      owner: { users: ['bitbucket-cloud:bob'], groups: [] },
    });
  });

  test('200 when an owner (not admin) updates their team', async () => {
    const res = await put(bob, 'builders', {
      auth: { owner: { users: ['bob'] }, member: { groups: ['acme'] } },
    });
    expect(res.status).toBe(200);
  });

  test('403 when an owner (not admin) tries to create a team', async () => {
    const res = await put(bob, 'bobs-new-team', { auth: validAuth });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: 'forbidden', message: 'forbidden' });
    expect((await get(alice, '/api/v1/teams/bobs-new-team')).status).toBe(404);
  });

  test('403 when a non-owner member/viewer tries to update', async () => {
    const res = await put(carol, 'builders', { auth: { owner: { users: ['carol'] } } });
    expect(res.status).toBe(403);
  });

  test('401 without a token', async () => {
    const res = await put(null, 'builders', { auth: validAuth });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: 'not_authorized', message: 'not authorized' });
  });

  test("400 'auth config for the team must not be empty' (no auth, {} auth)", async () => {
    for (const body of [{}, { auth: {} }, { auth: null }, []]) {
      const res = await put(alice, 'builders', body);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: 'invalid_team',
        message: 'auth config for the team must not be empty',
      });
    }
  });

  test("400 'auth config for the team does not have users and groups configured'", async () => {
    for (const auth of [
      { owner: {} },
      { owner: { users: [], groups: [] } },
      { owner: { users: ['bob'] }, viewer: {} },
    ]) {
      const res = await put(alice, 'builders', { auth });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { message: string }).message).toBe(
        'auth config for the team does not have users and groups configured',
      );
    }
  });

  test('400 naming the problem for an unknown role, a non-list, a non-string entry', async () => {
    const cases: [unknown, RegExp][] = [
      [{ admin: { users: ['bob'] } }, /unknown role 'admin'/],
      [{ owner: { users: 'bob' } }, /owner.users must be a list of strings/],
      [{ owner: { users: [42] } }, /owner.users must be a list of strings/],
      [{ owner: { users: ['bob'], teams: ['x'] } }, /unknown key 'teams'/],
    ];
    for (const [auth, message] of cases) {
      const res = await put(alice, 'builders', { auth });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { message: string }).message).toMatch(message);
    }
  });

  test('400 for an invalid team name (uppercase, slash, too long, leading dot)', async () => {
    for (const name of ['Main', 'a%2Fb', 'x'.repeat(65), '.hidden', 'sp%20ace']) {
      const res = await put(alice, name, { auth: validAuth });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { message: string }).message).toMatch(/^invalid team name/);
    }
  });

  test('400 for a body that is not JSON, 415 for another content type, 413 for a huge body', async () => {
    const bad = await put(alice, 'builders', '{"auth":', 'application/json');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'invalid_request', message: 'request body is not valid JSON' });
    const form = await put(alice, 'builders', 'auth=x', 'application/x-www-form-urlencoded');
    expect(form.status).toBe(415);
    const huge = await put(
      alice,
      'builders',
      JSON.stringify({ auth: { owner: { users: ['x'.repeat(2_000_000)] } } }),
    );
    expect(huge.status).toBe(413);
  });

  test('main: an admin may change it but must stay an owner (no lock-out)', async () => {
    const away = await put(alice, 'main', { auth: { owner: { users: ['bob'] } } });
    expect(away.status).toBe(400);
    expect(((await away.json()) as { message: string }).message).toMatch(/must keep you as an owner/);
    const kept = await put(alice, 'main', { auth: { owner: { users: ['alice', 'bob'] } } });
    expect(kept.status).toBe(200);
    // Restore, so other tests see the usual admin set.
    expect((await put(alice, 'main', { auth: { owner: { users: ['alice'] } } })).status).toBe(200);
  });
});

describe('GET /api/v1/teams and /api/v1/teams/:team', () => {
  test('a viewer sees the team and its config', async () => {
    const res = await get(carol, '/api/v1/teams/builders');
    expect(res.status).toBe(200);
    expect(((await res.json()) as { name: string }).name).toBe('builders');
  });

  test('403 for a user without a role; 404 for the admin on a missing team; 401 anonymous', async () => {
    expect((await get(bob, '/api/v1/teams/main')).status).toBe(403);
    const missing = await get(alice, '/api/v1/teams/no-such-team');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({
      error: 'team_not_found',
      message: "team 'no-such-team' not found",
    });
    // A non-admin cannot tell a missing team from a forbidden one.
    expect((await get(bob, '/api/v1/teams/no-such-team')).status).toBe(403);
    expect((await get(null, '/api/v1/teams/builders')).status).toBe(401);
  });

  test('the list holds the teams where the caller has a role; all teams for the admin', async () => {
    const names = async (who: LoggedIn): Promise<string[]> =>
      ((await (await get(who, '/api/v1/teams')).json()) as { name: string }[]).map((t) => t.name);
    expect(await names(carol)).toEqual(['builders', 'fresh']); // fresh: owned by the acme workspace
    expect(await names(bob)).toEqual(expect.arrayContaining(['builders']));
    expect(await names(bob)).not.toContain('main');
    const all = await names(alice);
    expect(all).toEqual(expect.arrayContaining(['builders', 'main']));
    expect(all).toEqual([...all].sort());
    expect((await get(null, '/api/v1/teams')).status).toBe(401);
  });
});

describe('DELETE /api/v1/teams/:team', () => {
  test('204 for the admin, then the team is gone and its members lose access', async () => {
    await put(alice, 'doomed', { auth: { viewer: { users: ['carol'] }, owner: { users: ['alice'] } } });
    expect((await get(carol, '/api/v1/teams/doomed')).status).toBe(200);
    const res = await del(alice, 'doomed');
    expect(res.status).toBe(204);
    expect((await get(alice, '/api/v1/teams/doomed')).status).toBe(404);
    expect((await get(carol, '/api/v1/teams/doomed')).status).toBe(403);
  });

  test('403 for an owner who is not admin', async () => {
    const res = await del(bob, 'builders');
    expect(res.status).toBe(403);
    expect((await get(bob, '/api/v1/teams/builders')).status).toBe(200);
  });

  test('main cannot be deleted (403 with the reason)', async () => {
    const res = await del(alice, 'main');
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: 'forbidden', message: 'the main team cannot be deleted' });
  });

  test('404 for a team that does not exist; 401 anonymous', async () => {
    expect((await del(alice, 'ghost')).status).toBe(404);
    expect((await del(null, 'builders')).status).toBe(401);
  });
});
