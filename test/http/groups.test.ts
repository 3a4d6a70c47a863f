import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import type { SkyRouterOptions } from '../../lib/http/router';
import { createLogger } from '../../lib/log';
import { FakeBitbucket, type OptionalEndpoint } from '../../lib/testing';
import { loginAs, type LoggedIn } from '../harness/login';
import { startNode, testPrefix, type TestNode } from '../harness/node';

/**
 * Identity and groups that follow Bitbucket (SPEC §5.2, §5.3, issue #14): user entries match only
 * their own kind of id, case folding is ASCII, optional Bitbucket calls never lock anyone out, and a
 * person removed from a workspace upstream loses what it gave them within SKY_GROUPS_MAX_AGE.
 */
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function status(node: TestNode, who: LoggedIn, path: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(`${node.url}${path}`, {
    ...init,
    headers: { ...who.bearer, ...(init.headers as Record<string, string> | undefined) },
  });
  await res.arrayBuffer();
  return res.status;
}

const groupsOf = (jwt: string): string[] =>
  (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { groups: string[] }).groups;

describe('typed principals and ASCII-only case folding', () => {
  let fake: FakeBitbucket;
  let node: TestNode;
  const impostor = (key: string, username: string, n: number) => ({
    key,
    uuid: `{11111111-0000-4000-8000-00000000000${n}}`,
    account_id: `557058:1111000${n}-0000`,
    username,
    nickname: key,
    display_name: key,
    emails: [],
  });

  beforeAll(async () => {
    fake = await FakeBitbucket.start();
    fake.addUser({
      key: 'eve',
      uuid: '{e7e00000-0000-4000-8000-000000000009}',
      account_id: '5b10ac8d82e05b22cc7d4ef5',
      username: 'eve',
      nickname: 'eve',
      display_name: 'Eve Owner',
      emails: [],
    });
    // Each impostor's username is someone else's id: bob's account id and uuid, eve's account id in capitals.
    fake.addUser(impostor('i1', '557058:b0b00000-0002', 1));
    fake.addUser(impostor('i2', '{b0b00000-0000-4000-8000-000000000002}', 2));
    fake.addUser(impostor('i3', '5B10AC8D82E05B22CC7D4EF5', 3));
    fake.addUser(impostor('i4', '5b10ac8d82e05b22cc7d4ef5', 4));
    fake.addUser(impostor('kelvin', '\u212Aarl', 5)); // the Kelvin sign, which Unicode folds to `k`
    node = await startNode({ fake });
    // The impostors can log in (a team names them by uuid); the vault names others by id.
    await node.putTeam('lobby', {
      viewer: { users: [1, 2, 3, 4, 5].map((n) => `{11111111-0000-4000-8000-00000000000${n}}`) },
    });
    await node.putTeam('vault', {
      owner: {
        users: ['557058:B0B00000-0002', '{b0b00000-0000-4000-8000-000000000002}', '5b10ac8d82e05b22cc7d4ef5'],
      },
    });
    await node.putTeam('karls', { owner: { users: ['karl'] } });
  });
  afterAll(async () => {
    await node.close();
    await fake.stop();
  });

  test('a username equal to another user’s account id or uuid, in any case, gains nothing; the owners keep the role', async () => {
    for (const key of ['i1', 'i2', 'i3', 'i4']) {
      const who = await loginAs(node.url, fake, key);
      expect(await status(node, who, '/api/v1/teams/vault')).toBe(403);
      const put = await status(node, who, '/api/v1/teams/vault', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ auth: { owner: { users: [`bitbucket-cloud:${key}`] } } }),
      });
      expect(put).toBe(403);
    }
    for (const key of ['bob', 'eve']) {
      expect(await status(node, await loginAs(node.url, fake, key), '/api/v1/teams/vault')).toBe(200);
    }
  });

  test('a username with the Kelvin sign does not match `karl`', async () => {
    const who = await loginAs(node.url, fake, 'kelvin');
    expect(await status(node, who, '/api/v1/teams/karls')).toBe(403);
  });

  test('a team write with a non-ASCII entry is refused with a message that names it', async () => {
    const alice = await loginAs(node.url, fake, 'alice');
    const res = await fetch(`${node.url}/api/v1/teams/vault2`, {
      method: 'PUT',
      headers: { ...alice.bearer, 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { owner: { users: ['kärl'], groups: [] } } }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toBe(
      "owner.users entry 'kärl' has non-ASCII characters or spaces: Bitbucket usernames, ids and workspaces are ASCII",
    );
  });
});

describe('optional Bitbucket calls never lock anyone out', () => {
  const cases: [OptionalEndpoint, 403 | 404 | 410][] = [
    ['1.0 groups', 403],
    ['1.0 groups', 404],
    ['1.0 groups', 410],
    ['workspace permission', 404],
    ['workspace permission', 410],
  ];

  test.each(cases)(
    '%s answering %d: 34 logins all succeed with the workspaces as groups, at most one warning',
    async (endpoint, code) => {
      const fake = await FakeBitbucket.start();
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString());
          done();
        },
      });
      const options: SkyRouterOptions = {
        logger: createLogger('info', sink),
        bitbucketCloud: {
          ...fake.connectorConfig({ includeTeamGroups: true, getWorkspacePermissions: true }),
        },
      };
      const node = await startNode({ fake, options });
      try {
        fake.removeEndpoint(endpoint, code);
        for (let i = 0; i < 34; i++) {
          const alice = await loginAs(node.url, fake, 'alice');
          expect(groupsOf(alice.token)).toEqual(expect.arrayContaining(['acme', 'widgets']));
        }
        const warnings = lines.filter(
          (l) => l.includes(`"endpoint":"${endpoint}"`) && l.includes('"level":40'),
        );
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain(`(${code})`);
        const route = endpoint === '1.0 groups' ? '/1.0/groups/' : /\/permission$/;
        // Gone (404/410): not called again for the hour, so a removed API costs no Bitbucket budget.
        if (code !== 403) expect(fake.count(route)).toBeLessThanOrEqual(2);
      } finally {
        await node.close();
        await fake.stop();
      }
    },
  );

  test('a Bitbucket 403 on an optional call never renders sky’s “You do not have access” page', async () => {
    const fake = await FakeBitbucket.start();
    const node = await startNode({
      fake,
      options: { bitbucketCloud: fake.connectorConfig({ getWorkspacePermissions: true }) },
    });
    try {
      fake.removeEndpoint('workspace permission', 403);
      fake.consentAs('alice');
      const res = await fetch(`${node.url}/sky/login`, { redirect: 'manual' });
      const authorize = await fetch(res.headers.get('location') ?? '', { redirect: 'manual' });
      const cookie = res.headers
        .getSetCookie()
        .map((c) => c.split(';')[0])
        .join('; ');
      const callback = await fetch(authorize.headers.get('location') ?? '', {
        redirect: 'manual',
        headers: { cookie, accept: 'text/html' },
      });
      expect(callback.status).toBe(302);
      expect(await callback.text()).not.toContain('You do not have access');
    } finally {
      await node.close();
      await fake.stop();
    }
  });
});

describe('prompt deprovisioning (SKY_GROUPS_MAX_AGE)', () => {
  let fake: FakeBitbucket;
  let a: TestNode;
  let b: TestNode;
  const MAX_AGE_MS = 2_000;

  beforeEach(async () => {
    fake = await FakeBitbucket.start();
    const options = { keyPrefix: testPrefix(), signingKey, groupsMaxAge: '2s' };
    a = await startNode({ fake, options });
    b = await startNode({ fake, options: { ...options, externalUrl: a.externalUrl } });
    await a.putTeam('widgets-team', { owner: { groups: ['widgets'] } });
    await a.putTeam('acme-team', { member: { groups: ['acme'] } });
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
    await fake.stop();
  });

  test('bob, removed from widgets upstream, loses its team within the bound plus one request, on both nodes, for good', async () => {
    const bob = await loginAs(a.url, fake, 'bob');
    expect(await status(a, bob, '/api/v1/teams/widgets-team')).toBe(200);
    expect(await status(b, bob, '/api/v1/teams/widgets-team')).toBe(200);
    fake.leaveWorkspace('bob', 'widgets');
    const removedAt = Date.now();
    await sleep(MAX_AGE_MS + 100);
    await status(a, bob, '/api/v1/teams/widgets-team'); // the "one request": it starts the re-read
    let lost = Infinity;
    while (Date.now() - removedAt < MAX_AGE_MS * 3) {
      const [onA, onB] = [
        await status(a, bob, '/api/v1/teams/widgets-team'),
        await status(b, bob, '/api/v1/teams/widgets-team'),
      ];
      if (onA === 403 && onB === 403) {
        lost = Date.now() - removedAt;
        break;
      }
      await sleep(50);
    }
    expect(lost).toBeLessThan(MAX_AGE_MS + 1_000);
    // His write of the team, to make the role permanent by name, is refused.
    const put = await status(a, bob, '/api/v1/teams/widgets-team', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { owner: { users: ['bitbucket-cloud:bob'] } } }),
    });
    expect(put).toBe(403);
    await sleep(MAX_AGE_MS * 2);
    expect(await status(a, bob, '/api/v1/teams/widgets-team')).toBe(403);
    expect(await status(b, bob, '/api/v1/teams/widgets-team')).toBe(403);
    // The token still works for what does not come from widgets.
    expect(await status(b, bob, '/api/v1/user')).toBe(200);
  }, 30_000);

  test('Bitbucket down: the last groups hold for the bound again, then group roles are refused with the message; back without a new login', async () => {
    // carol is a member of acme-team through workspace acme only.
    const carol = await loginAs(a.url, fake, 'carol');
    expect(await status(a, carol, '/api/v1/teams/acme-team')).toBe(200);
    const loggedInAt = Date.now();
    fake.addFault({ match: 'api', status: 503 });
    await sleep(MAX_AGE_MS + 200);
    // Past the bound, within twice it: the last groups still hold (a re-read is tried meanwhile).
    expect(await status(a, carol, '/api/v1/teams/acme-team')).toBe(200);
    await sleep(Math.max(0, loggedInAt + 2 * MAX_AGE_MS + 300 - Date.now()));
    const refused = await fetch(`${b.url}/api/v1/teams/acme-team`, { headers: carol.bearer });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain(
      'your Bitbucket Cloud workspaces and groups could not be read again for more than 4 seconds',
    );
    // Roles not from groups stay: the token itself is good.
    expect(await status(a, carol, '/api/v1/user')).toBe(200);
    fake.clearFaults();
    expect(await status(a, carol, '/api/v1/teams/acme-team')).toBe(200);
    expect(await status(b, carol, '/api/v1/teams/acme-team')).toBe(200);
  }, 30_000);
});
