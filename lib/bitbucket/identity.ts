import type { BitbucketCloudConfig } from './settings';
import type { Identity } from '../connector';
import { SkyError } from '../errors';
import type { BitbucketClient, BitbucketEmail } from './client';

export const BITBUCKET_CLOUD = 'bitbucket-cloud';

/** A confirmed primary address, else any confirmed one, else none: never an unconfirmed address (SPEC §5.2). */
export function confirmedEmail(emails: BitbucketEmail[]): string | undefined {
  const confirmed = emails.filter((e) => e.is_confirmed);
  return (confirmed.find((e) => e.is_primary) ?? confirmed[0])?.email;
}

/** Runs `work` over `items` with at most `limit` at once; after a failure no new item is started. */
async function bounded<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await work(items[i] as T);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}

/**
 * Who the person is (SPEC §5.2) and their groups (§5.3): user, emails and workspaces at once, then the
 * per-workspace calls with bounded concurrency. Never the nickname: anyone can take any nickname.
 */
export async function fetchIdentity(
  client: BitbucketClient,
  config: BitbucketCloudConfig,
  accessToken: string,
): Promise<Identity> {
  const [user, emails, workspaces] = await Promise.all([
    client.user(accessToken),
    client.emails(accessToken),
    client.workspaces(accessToken),
  ]);
  // Bitbucket's own spelling of the slug for its URLs; lower-cased only as a group name.
  const bySlug = new Map(workspaces.map((w) => [w.workspace.slug.toLowerCase(), w.workspace.slug]));
  let slugs = [...bySlug.keys()];
  if (config.teams.length > 0) {
    const allowed = new Set(config.teams.map((t) => t.toLowerCase()));
    slugs = slugs.filter((s) => allowed.has(s));
    if (slugs.length === 0) {
      throw new SkyError(
        'not_in_allowed_teams',
        `You are not a member of any of the allowed Bitbucket workspaces: ${config.teams.join(', ')}`,
      );
    }
  }
  const groups = new Set(slugs);
  const uuid = user.uuid.toLowerCase();
  // Only groups the person is in (dex added every group of the workspace).
  const memberGroups = async (slug: string, asGiven: string): Promise<string[]> =>
    (await client.groups(accessToken, asGiven))
      .filter((g) => g.members.some((m) => m.uuid.toLowerCase() === uuid || m.account_id === user.account_id))
      .map((g) => `${slug}/${g.slug.toLowerCase()}`);
  // A workspace's groups and permission do not depend on each other: both calls at once. Neither is
  // needed to log in: Bitbucket refusing one skips it (not an admin: dex #1977, Concourse #6612; gone).
  const extra = await bounded(slugs, config.concurrency, async (slug) => {
    const asGiven = bySlug.get(slug) ?? slug;
    const [found, permission] = await Promise.all([
      config.includeTeamGroups
        ? client.optional.run('1.0 groups', [], () => memberGroups(slug, asGiven))
        : [],
      config.getWorkspacePermissions
        ? client.optional.run('workspace permission', null, () => client.permission(accessToken, asGiven))
        : null,
    ]);
    return permission === null ? found : [...found, `${slug}:${permission}`];
  });
  for (const list of extra) for (const g of list) groups.add(g);
  const email = confirmedEmail(emails);
  return {
    connector: BITBUCKET_CLOUD,
    userId: uuid,
    accountId: user.account_id,
    ...(user.username ? { userName: user.username } : {}),
    name: user.display_name,
    ...(email ? { email } : {}),
    groups: [...groups],
  };
}
