import { BitbucketClient, fetchIdentity } from '../../lib/bitbucket';
import type { BitbucketCloudConfig } from '../../lib/bitbucket/settings';
import type { Identity } from '../../lib/connector';
import { SkyError } from '../../lib/errors';
import { FakeBitbucket } from '../../lib/testing';
import { failureOf, tokensFor } from './fake-login';

let fake: FakeBitbucket;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
afterAll(() => fake.stop());
afterEach(() => {
  fake.clearFaults();
  fake.resetRequests();
});

/** Logs `user` in at the fake and reads their identity with the connector configured by `overrides`. */
async function identityOf(user: string, overrides: Partial<BitbucketCloudConfig> = {}): Promise<Identity> {
  const config = fake.connectorConfig(overrides);
  const client = new BitbucketClient(config);
  const { accessToken } = await tokensFor(fake, user);
  fake.resetRequests();
  return fetchIdentity(client, config, accessToken);
}

describe('identity (SPEC §5.2)', () => {
  test('alice: braced uuid, account id, username, display name, confirmed email, workspaces', async () => {
    expect(await identityOf('alice')).toEqual({
      connector: 'bitbucket-cloud',
      userId: '{a11ce000-0000-4000-8000-000000000001}',
      accountId: '557058:a11ce000-0001',
      userName: 'alice',
      name: 'Alice Admin',
      email: 'alice@example.com',
      groups: ['acme', 'widgets'],
    });
  });

  test('the uuid is lower-cased, braces kept', async () => {
    fake.addUser({
      key: 'upper',
      uuid: '{ABCDEF00-0000-4000-8000-00000000000A}',
      account_id: '557058:abcdef00',
      username: 'Upper',
      nickname: 'upper',
      display_name: 'Upper Case',
      emails: [],
    });
    const id = await identityOf('upper');
    expect(id.userId).toBe('{abcdef00-0000-4000-8000-00000000000a}');
    expect(id.userName).toBe('Upper');
  });

  test('mallory has no username: her nickname ("alice") never becomes the user name', async () => {
    const id = await identityOf('mallory');
    expect(id).not.toHaveProperty('userName');
    expect(JSON.stringify(id)).not.toContain('"alice"');
    expect(id.userId).toBe('{3a11041e-0000-4000-8000-000000000004}');
    expect(id.groups).toEqual(['mallory-ws']);
  });

  test('bob: the unconfirmed primary is skipped for the confirmed secondary', async () => {
    expect((await identityOf('bob')).email).toBe('bob@example.com');
  });

  test('carol: only an unconfirmed address, so no email at all; login is not blocked', async () => {
    const id = await identityOf('carol');
    expect(id).not.toHaveProperty('email');
    expect(id.groups).toEqual(['acme']);
  });

  test('dave: no workspaces, no groups; none of the removed endpoints is ever called', async () => {
    expect((await identityOf('dave')).groups).toEqual([]);
    for (const removed of [
      '/2.0/teams',
      '/2.0/user/permissions/teams',
      '/2.0/user/permissions/workspaces',
      '/2.0/workspaces',
    ])
      expect(fake.count(removed)).toBe(0);
    expect(fake.requests.map((r) => r.path).sort()).toEqual([
      '/2.0/user',
      '/2.0/user/emails',
      '/2.0/user/workspaces',
    ]);
  });

  test('user, emails and workspaces are requested concurrently', async () => {
    const config = fake.connectorConfig();
    const client = new BitbucketClient(config);
    const { accessToken } = await tokensFor(fake, 'alice');
    fake.resetRequests();
    fake.addFault({ match: 'api', latencyMs: 100 });
    await fetchIdentity(client, config, accessToken);
    const times = fake.requests.map((r) => r.at);
    expect(times).toHaveLength(3);
    // One after the other, each would arrive ≥ 100 ms after the previous one.
    expect(Math.max(...times) - Math.min(...times)).toBeLessThan(50);
  });
});

describe('groups (SPEC §5.3)', () => {
  test('the teams allow-list keeps only listed workspaces', async () => {
    expect((await identityOf('alice', { teams: ['acme', 'elsewhere'] })).groups).toEqual(['acme']);
  });

  test('a user in none of the allowed workspaces is refused with a message naming them', async () => {
    const err = await failureOf(identityOf('bob', { teams: ['acme', 'mallory-ws'] }));
    expect(err).toBeInstanceOf(SkyError);
    expect(err.code).toBe('not_in_allowed_teams');
    expect(err.status).toBe(403);
    expect(err.message).toBe(
      'You are not a member of any of the allowed Bitbucket workspaces: acme, mallory-ws',
    );
  });

  test('includeTeamGroups adds only the groups the user is in; a 403 workspace is skipped quietly', async () => {
    const id = await identityOf('alice', { includeTeamGroups: true });
    expect(id.groups).toEqual(['acme', 'widgets', 'acme/developers']);
    expect(id.groups).not.toContain('acme/ops');
    // alice is only a member of widgets: the 1.0 API says 403 and login goes on without widgets/core.
    expect(fake.count('/1.0/groups/widgets')).toBe(1);
    expect(fake.count('/1.0/groups/acme')).toBe(1);
  });

  test('includeTeamGroups for a user who administers nothing still logs in', async () => {
    expect((await identityOf('carol', { includeTeamGroups: true })).groups).toEqual(['acme']);
  });

  test('includeTeamGroups: a 1.0 failure other than 403 fails the login', async () => {
    fake.addFault({ match: /^\/1\.0\/groups\//, status: 500 });
    const err = await failureOf(identityOf('alice', { includeTeamGroups: true, retries: 0 }));
    expect(err.code).toBe('upstream_error');
  });

  test('getWorkspacePermissions adds slug:permission for each kept workspace', async () => {
    expect((await identityOf('alice', { getWorkspacePermissions: true })).groups).toEqual([
      'acme',
      'widgets',
      'acme:owner',
      'widgets:member',
    ]);
    expect((await identityOf('alice', { getWorkspacePermissions: true, teams: ['widgets'] })).groups).toEqual(
      ['widgets', 'widgets:member'],
    );
    expect(fake.count('/2.0/user/workspaces/acme')).toBe(0);
  });

  test('groups are lower-cased and deduplicated', async () => {
    fake.addWorkspace({
      slug: 'MixedCase',
      uuid: '{m}',
      name: 'Mixed',
      members: [{ user: 'dave', permission: 'owner' }],
      groups: [{ name: 'Team', slug: 'Team', members: ['dave'] }],
    });
    for (const slug of ['Dup', 'dup'])
      fake.addWorkspace({
        slug,
        uuid: `{${slug}}`,
        name: slug,
        members: [{ user: 'dave', permission: 'member' }],
        groups: [],
      });
    const id = await identityOf('dave', { includeTeamGroups: true });
    expect([...id.groups].sort()).toEqual(['dup', 'mixedcase', 'mixedcase/team']);
    expect(fake.count('/1.0/groups/MixedCase')).toBe(1);
  });

  test('per-workspace calls run with bounded concurrency', async () => {
    for (let i = 0; i < 6; i++) {
      fake.addWorkspace({ slug: `lane-${i}`, uuid: `{l${i}}`, name: `L${i}`, members: [], groups: [] });
      fake.joinWorkspace('bob', `lane-${i}`, 'member');
    }
    const permission = /^\/2\.0\/user\/workspaces\/[^/]+\/permission$/;
    const arrivals = (): number[] =>
      fake.requests
        .filter((r) => permission.test(r.path))
        .map((r) => r.at)
        .sort((a, b) => a - b);

    fake.addFault({ match: permission, latencyMs: 60 });
    const serial = await identityOf('bob', { getWorkspacePermissions: true, concurrency: 1 });
    expect(serial.groups).toContain('lane-5:member');
    const one = arrivals();
    expect(one).toHaveLength(7);
    // With one lane each call waits for the previous answer (≥ 60 ms later).
    for (let i = 1; i < one.length; i++) expect((one[i] ?? 0) - (one[i - 1] ?? 0)).toBeGreaterThanOrEqual(50);

    fake.resetRequests();
    await identityOf('bob', { getWorkspacePermissions: true, concurrency: 3 });
    const three = arrivals();
    expect(three).toHaveLength(7);
    expect((three[2] ?? 0) - (three[0] ?? 0)).toBeLessThan(40);
    expect((three[3] ?? 0) - (three[0] ?? 0)).toBeGreaterThanOrEqual(50);
  });
});
