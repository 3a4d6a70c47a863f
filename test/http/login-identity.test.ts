import { FakeBitbucket } from '../../lib/testing';
import { Browser, type Hop } from '../harness/browser';
import { startNode, type TestNode } from '../harness/node';

let fake: FakeBitbucket;
const nodes: TestNode[] = [];

beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  await fake.stop();
});

async function node(bitbucket: Record<string, unknown> = {}): Promise<TestNode> {
  const n = await startNode({
    fake,
    options: {
      bitbucketCloud: {
        clientId: fake.client.id,
        clientSecret: fake.client.secret,
        webUrl: fake.webUrl,
        apiUrl: fake.apiUrl,
        timeoutMs: 1_000,
        ...bitbucket,
      },
    },
  });
  nodes.push(n);
  return n;
}

async function loginAs(
  target: TestNode,
  user: string,
): Promise<{ last: Hop; claims: Record<string, unknown> | null }> {
  fake.consentAs(user);
  const browser = new Browser();
  const hops = await browser.follow(`${target.url}/sky/login`, 3);
  const last = hops[hops.length - 1] as Hop;
  const cookie = browser.jar.get('skymarshal_auth');
  if (!cookie) return { last, claims: null };
  const payload = decodeURIComponent(cookie).slice('bearer '.length).split('.')[1] ?? '';
  return {
    last,
    claims: JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>,
  };
}

describe('identity (SPEC §5.2)', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await node();
    await n.putTeam('alices', { member: { users: ['bitbucket-cloud:alice'], groups: [] } });
    await n.putTeam('acme-team', { viewer: { users: [], groups: ['bitbucket-cloud:acme'] } });
    await n.putTeam('widgets-team', { viewer: { users: [], groups: ['bitbucket-cloud:widgets'] } });
  });

  test('a user without username whose nickname equals an authorized login gets nothing', async () => {
    const { last, claims } = await loginAs(n, 'mallory');
    expect(last.status).toBe(403);
    expect(last.body).toContain('You are not a member of any team');
    expect(claims).toBeNull();
  });

  test('an unconfirmed email never reaches a token', async () => {
    const carol = await loginAs(n, 'carol');
    expect(carol.last.status).toBe(302);
    expect(carol.claims?.['email']).toBe('');
    expect(JSON.stringify(carol.claims)).not.toContain('unconfirmed');
    const bob = await loginAs(n, 'bob');
    expect(bob.claims?.['email']).toBe('bob@example.com');
  });

  test('a user in no team is refused with the page of §4.2, and no token', async () => {
    const { last, claims } = await loginAs(n, 'dave');
    expect(last.status).toBe(403);
    expect(last.body).toContain('You are not a member of any team');
    expect(last.setCookies.some((c) => c.startsWith('skymarshal_auth'))).toBe(false);
    expect(claims).toBeNull();
  });

  test('roles from users and groups: highest role counts, all held roles go in the claim', async () => {
    const { claims } = await loginAs(n, 'alice');
    expect(claims?.['teams']).toEqual({
      main: ['owner'],
      alices: ['member'],
      'acme-team': ['viewer'],
      'widgets-team': ['viewer'],
    });
  });
});

test('a user in 150 workspaces over many pages gets the role of a team keyed on the last one', async () => {
  fake.addUser({
    key: 'busy',
    uuid: '{0b0b0b0b-0000-4000-8000-000000000150}',
    account_id: '5550:busy',
    username: 'busy',
    nickname: 'busy',
    display_name: 'Busy Bee',
    emails: [{ email: 'busy@example.com', is_primary: true, is_confirmed: true }],
  });
  for (let i = 1; i <= 150; i++) {
    fake.addWorkspace({ slug: `ws-${i}`, uuid: `{ws-${i}}`, name: `WS ${i}`, members: [], groups: [] });
    fake.joinWorkspace('busy', `ws-${i}`, 'member');
  }
  const n = await node();
  await n.putTeam('last', { 'pipeline-operator': { users: [], groups: ['ws-150'] } });
  fake.resetRequests();
  const { claims } = await loginAs(n, 'busy');
  expect(claims?.['teams']).toEqual({ last: ['pipeline-operator'] });
  expect((claims?.['groups'] as string[]).length).toBe(150);
  expect(fake.count('/2.0/user/workspaces')).toBeGreaterThanOrEqual(2);
  for (const removed of ['/2.0/teams', '/2.0/user/permissions', '/2.0/workspaces'])
    expect(fake.count(removed)).toBe(0);
});

describe('the teams allow-list (SPEC §5.3)', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await node({ teams: ['acme'] });
    await n.putTeam('everyone', { viewer: { users: [], groups: ['acme', 'widgets'] } });
  });

  test('admits a member of a listed workspace, with only listed workspaces in groups', async () => {
    const { last, claims } = await loginAs(n, 'alice');
    expect(last.status).toBe(302);
    expect(claims?.['groups']).toEqual(['acme']);
  });

  test('refuses a user in none of the listed workspaces, with a page that says so', async () => {
    const { last, claims } = await loginAs(n, 'bob');
    expect(last.status).toBe(403);
    expect(last.body).toContain('not allowed');
    expect(last.body).toContain('acme');
    expect(claims).toBeNull();
  });
});

test('includeTeamGroups for a user admin of one workspace and not of another still logs in', async () => {
  const n = await node({ includeTeamGroups: true, getWorkspacePermissions: true });
  await n.putTeam('devs', { member: { users: [], groups: ['acme/developers'] } });
  const { last, claims } = await loginAs(n, 'alice');
  expect(last.status).toBe(302);
  const groups = claims?.['groups'] as string[];
  expect(groups).toEqual(
    expect.arrayContaining(['acme', 'widgets', 'acme/developers', 'acme:owner', 'widgets:member']),
  );
  expect(groups).not.toContain('acme/ops'); // a group of the workspace alice is not in
  expect(groups.some((g) => g.startsWith('widgets/'))).toBe(false); // 403 from the 1.0 API: skipped quietly
  expect(claims?.['teams']).toMatchObject({ devs: ['member'] });
});
