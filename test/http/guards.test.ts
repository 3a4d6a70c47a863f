import type { Request, Response } from 'express';
import { claimsOf } from '../../lib/http/context';
import { requiresAdmin, requiresAuth, requiresTeamRole } from '../../lib/http/guards';
import { ROLE_INCLUDES, ROLES, type Role } from '../../lib/teams/auth';
import { FakeBitbucket } from '../../lib/testing';
import { loginAs, type LoggedIn } from '../harness/login';
import { startNode, type TestNode } from '../harness/node';

/** The whole role table of SPEC §6.3 / §7.3 through real HTTP, against live team configs in Redis. */
let fake: FakeBitbucket;
let node: TestNode;
let alice: LoggedIn; // owner of main: admin
let bob: LoggedIn;
let beforeGuard: unknown;

const ok = (_req: Request, res: Response): void => {
  res.json({ ok: true });
};

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({
    fake,
    routes: (app) => {
      for (const role of ROLES) app.all(`/probe/${role}/:team`, requiresTeamRole(role), ok);
      app.get('/probe-fixed', requiresTeamRole('member', { team: 'fixed' }), ok);
      app.get('/probe-fn', requiresTeamRole('viewer', { team: (req) => String(req.query['t']) }), ok);
      app.get('/probe-auth', requiresAuth(), ok);
      // What a host route sees of the caller: nothing before a guard, the verified claims after it.
      app.get(
        '/probe-claims',
        (req, _res, next) => {
          beforeGuard = claimsOf(req);
          next();
        },
        requiresAuth(),
        (req, res) => {
          res.json({
            before: beforeGuard ?? null,
            user: claimsOf(req)?.user_name,
            own: Object.keys(req).filter((k) => k.startsWith('sky')),
          });
        },
      );
      app.get('/probe-admin', requiresAdmin(), ok);
    },
  });
  await node.putTeam('table', { owner: { users: ['carol'] }, viewer: { users: ['bob'] } });
  alice = await loginAs(node.url, fake, 'alice');
  bob = await loginAs(node.url, fake, 'bob');
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

/** Sets team `table` through the API as the admin, so this node's cache is invalidated at once. */
async function bobHolds(role: Role | null): Promise<void> {
  const auth = role
    ? {
        [role]: { users: ['bitbucket-cloud:bob'] },
        ...(role === 'owner' ? {} : { owner: { users: ['carol'] } }),
      }
    : { owner: { users: ['carol'] } };
  const res = await fetch(`${node.url}/api/v1/teams/table`, {
    method: 'PUT',
    headers: { ...alice.bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth }),
  });
  expect(res.status).toBe(200);
}

const held: (Role | null)[] = [...ROLES, null];
describe.each(held)('bob holds %s on the team', (role) => {
  beforeAll(() => bobHolds(role));
  test.each(ROLES)(`requiresTeamRole(%s)`, async (required) => {
    const res = await fetch(`${node.url}/probe/${required}/table`, { headers: bob.bearer });
    const allowed = role !== null && ROLE_INCLUDES[role].includes(required);
    expect(res.status).toBe(allowed ? 200 : 403);
    if (!allowed) expect(await res.json()).toEqual({ error: 'forbidden', message: 'forbidden' });
  });
});

test('the table is strictly ordered: each role includes exactly itself and every lower role', () => {
  ROLES.forEach((role, i) => expect([...ROLE_INCLUDES[role]]).toEqual(ROLES.slice(i)));
});

test('the admin (owner of main) passes every role on a team that does not name them', async () => {
  for (const required of ROLES) {
    const res = await fetch(`${node.url}/probe/${required}/table`, { headers: alice.bearer });
    expect(res.status).toBe(200);
  }
  expect((await fetch(`${node.url}/probe-admin`, { headers: alice.bearer })).status).toBe(200);
  expect((await fetch(`${node.url}/probe-admin`, { headers: bob.bearer })).status).toBe(403);
});

test('claimsOf(req) gives a host route the verified claims; sky adds no property to req', async () => {
  const res = await fetch(`${node.url}/probe-claims`, { headers: bob.bearer });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ before: null, user: 'bob', own: [] });
  expect((await fetch(`${node.url}/probe-claims`)).status).toBe(401);
});

test('anonymous and bad tokens get 401 not authorized on every guard', async () => {
  for (const path of ['/probe/viewer/table', '/probe-auth', '/probe-admin', '/probe-fixed']) {
    const anonymous = await fetch(`${node.url}${path}`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toEqual({ error: 'not_authorized', message: 'not authorized' });
    const forged = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${bob.token}x` } });
    expect(forged.status).toBe(401);
  }
  // A non-Bearer scheme is not a token.
  const basic = await fetch(`${node.url}/probe-auth`, { headers: { authorization: 'Basic Ym9iOmJvYg==' } });
  expect(basic.status).toBe(401);
});

test('the Bearer scheme is case-insensitive', async () => {
  const res = await fetch(`${node.url}/probe-auth`, { headers: { authorization: `bEaReR ${bob.token}` } });
  expect(res.status).toBe(200);
});

test('a team from options (fixed name or a function of the request)', async () => {
  expect((await fetch(`${node.url}/probe-fixed`, { headers: bob.bearer })).status).toBe(403);
  await node.putTeam('fixed', { member: { users: ['bob'] } });
  await waitFor(async () => (await fetch(`${node.url}/probe-fixed`, { headers: bob.bearer })).status === 200);
  await bobHolds('viewer');
  expect((await fetch(`${node.url}/probe-fn?t=table`, { headers: bob.bearer })).status).toBe(200);
  expect((await fetch(`${node.url}/probe-fn?t=other`, { headers: bob.bearer })).status).toBe(403);
});

describe('cookie requests', () => {
  beforeAll(() => bobHolds('owner'));

  test('GET with the cookie alone is enough', async () => {
    const res = await bob.browser.request(`${node.url}/probe/owner/table`);
    expect(res.status).toBe(200);
  });

  test('PUT without X-Csrf-Token → 401 and the cookies are cleared', async () => {
    const res = await fetch(`${node.url}/probe/viewer/table`, {
      method: 'PUT',
      headers: { cookie: bob.browser.cookieHeader() },
    });
    expect(res.status).toBe(401);
    const cleared = res.headers.getSetCookie();
    for (const name of ['skymarshal_auth', 'skymarshal_csrf']) {
      expect(cleared.find((c) => c.startsWith(`${name}=;`))).toMatch(/Expires=Thu, 01 Jan 1970/);
    }
  });

  test('PUT with a wrong X-Csrf-Token → 401; with the right one → 200', async () => {
    const headers = { cookie: bob.browser.cookieHeader() };
    const wrong = await fetch(`${node.url}/probe/viewer/table`, {
      method: 'PUT',
      headers: { ...headers, 'x-csrf-token': `${bob.csrf}x` },
    });
    expect(wrong.status).toBe(401);
    const right = await fetch(`${node.url}/probe/viewer/table`, {
      method: 'PUT',
      headers: { ...headers, 'x-csrf-token': bob.csrf },
    });
    expect(right.status).toBe(200);
  });

  test('a 403 to a cookie request keeps the cookies (the user is valid)', async () => {
    await bobHolds('viewer');
    const res = await bob.browser.request(`${node.url}/probe/member/table`);
    expect(res.status).toBe(403);
    expect(res.setCookies).toEqual([]);
  });

  test('a Bearer request never needs CSRF and never gets cookies cleared', async () => {
    const res = await fetch(`${node.url}/probe/viewer/table`, { method: 'DELETE', headers: bob.bearer });
    expect(res.status).toBe(200);
    const refused = await fetch(`${node.url}/probe-admin`, {
      method: 'GET',
      headers: { authorization: 'Bearer x' },
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.getSetCookie()).toEqual([]);
  });
});

async function waitFor(check: () => Promise<boolean>, ms = 1000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
