import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FakeUser } from '../fixtures';
import { sendError, sendJson } from './http';
import type { FakeState } from './state';

/** The fake's REST API (SPEC §5.1): the 2.0 user, emails, workspaces and permission, and 1.0 groups. */

/** The optional endpoints a test can make disappear (Atlassian lists the 1.0 groups API as removed). */
export type OptionalEndpoint = '1.0 groups' | 'workspace permission';
const OPTIONAL_ROUTES: Record<OptionalEndpoint, RegExp> = {
  '1.0 groups': /^\/1\.0\/groups\//,
  'workspace permission': /^\/2\.0\/user\/workspaces\/[^/]+\/permission$/,
};

/** Endpoints Bitbucket removed (SPEC §5.1): clients must not call them. */
const REMOVED_ROUTES = [
  /^\/2\.0\/teams(\/|$)/,
  /^\/2\.0\/user\/permissions\/(teams|workspaces)(\/|$)/,
  /^\/2\.0\/workspaces(\/|$)/,
];

function groupMember(user: FakeUser): Record<string, string> {
  return {
    uuid: user.uuid,
    account_id: user.account_id,
    display_name: user.display_name,
    nickname: user.nickname,
    ...(user.username === undefined ? {} : { username: user.username }),
  };
}

/** Bitbucket paging: `page` and `pagelen` (≤ 100); `next` an absolute URL, only when more remain. */
function paged(res: ServerResponse, url: URL, all: unknown[]): void {
  const pagelen = Number(url.searchParams.get('pagelen') ?? 10);
  const page = Number(url.searchParams.get('page') ?? 1);
  if (!Number.isInteger(pagelen) || pagelen < 1 || pagelen > 100)
    return sendError(res, 400, 'pagelen must be an integer from 1 to 100.');
  if (!Number.isInteger(page) || page < 1) return sendError(res, 400, 'page must be a positive integer.');
  const values = all.slice((page - 1) * pagelen, page * pagelen);
  const body: Record<string, unknown> = { pagelen, page, size: all.length, values };
  if (page * pagelen < all.length) {
    const next = new URL(url.href);
    next.searchParams.set('pagelen', String(pagelen));
    next.searchParams.set('page', String(page + 1));
    body['next'] = next.href;
  }
  sendJson(res, 200, body);
}

function permission(state: FakeState, res: ServerResponse, user: FakeUser, slug: string): void {
  const membership = state.memberships(user).find((m) => m.workspace.slug === slug);
  if (!membership) return sendError(res, 404, `You are not a member of workspace ${slug}.`);
  const { workspace: w } = membership;
  sendJson(res, 200, {
    type: 'workspace_membership',
    permission: membership.permission,
    workspace: { type: 'workspace', slug: w.slug, uuid: w.uuid, name: w.name },
  });
}

/** The 1.0 groups API answers workspace administrators only. */
function groups(state: FakeState, res: ServerResponse, user: FakeUser, slug: string): void {
  const workspace = state.workspaces.get(slug);
  if (!workspace) return sendError(res, 404, `No workspace ${slug}.`);
  if (workspace.members.find((m) => m.user === user.key)?.permission !== 'owner')
    return sendError(res, 403, 'You must be an administrator of this workspace to list its groups.');
  const known = (key: string): FakeUser[] => {
    const member = state.users.get(key);
    return member ? [member] : [];
  };
  sendJson(
    res,
    200,
    workspace.groups.map((g) => ({
      name: g.name,
      slug: g.slug,
      members: g.members.flatMap(known).map(groupMember),
    })),
  );
}

/**
 * Any request that is not OAuth. `url` is absolute on the fake's own origin; `removed` holds the
 * optional endpoints a test took away, with the status they answer.
 */
export function api(
  state: FakeState,
  removed: ReadonlyMap<OptionalEndpoint, number>,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): void {
  const route = url.pathname;
  if (REMOVED_ROUTES.some((r) => r.test(route)))
    return sendError(res, 410, 'This API is no longer available.');
  for (const [endpoint, status] of removed) {
    if (OPTIONAL_ROUTES[endpoint].test(route))
      return sendError(res, status, status === 403 ? 'Forbidden.' : 'This API is no longer available.');
  }
  if (url.searchParams.has('access_token'))
    return sendError(res, 401, 'Access tokens in the query string are no longer accepted.');
  const user = state.bearerUser(req);
  if (!user) return sendError(res, 401, 'Access token expired, revoked or invalid.');
  if (route === '/2.0/user') {
    const { key: _key, emails: _emails, ...fields } = user;
    return sendJson(res, 200, { type: 'user', ...fields, links: {} });
  }
  if (route === '/2.0/user/emails')
    return paged(
      res,
      url,
      user.emails.map((e) => ({ ...e, type: 'email' })),
    );
  if (route === '/2.0/user/workspaces')
    return paged(
      res,
      url,
      state.memberships(user).map(({ workspace: w, permission: p }) => ({
        type: 'workspace_access',
        administrator: p === 'owner',
        workspace: { type: 'workspace', slug: w.slug, uuid: w.uuid, name: w.name },
      })),
    );
  const slug = /^\/2\.0\/user\/workspaces\/([^/]+)\/permission$/.exec(route)?.[1];
  if (slug !== undefined) return permission(state, res, user, decodeURIComponent(slug));
  const groupsOf = /^\/1\.0\/groups\/([^/]+)\/?$/.exec(route)?.[1];
  if (groupsOf !== undefined) return groups(state, res, user, decodeURIComponent(groupsOf));
  return sendError(res, 404, `Resource not found: ${route}`);
}
