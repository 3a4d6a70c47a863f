import type { IncomingMessage } from 'node:http';
import { SkyError } from '../../errors';
import type { FakeClient, FakeFixtures, FakeUser, FakeWorkspace, Permission } from '../fixtures';

/** One consent of one user: every token issued from it dies when the user removes the app. */
export interface Grant {
  user: string;
  revoked: boolean;
}
export interface AccessToken {
  grant: Grant;
  expiresAt: number;
}
export interface AuthorizationCode {
  user: string;
  client: string;
  /** The redirect_uri sent at authorize; the exchange must repeat it. */
  redirectUri: string | null;
  challenge: string | null;
  expiresAt: number;
}
/** What authorize does without a form: consent as a user, deny, or show the consent page (null). */
export type Decision = { as: string } | 'deny' | null;

/** What the fake Bitbucket knows: fixture users, workspaces and clients, and what it has issued. */
export class FakeState {
  readonly users = new Map<string, FakeUser>();
  readonly workspaces = new Map<string, FakeWorkspace>();
  readonly clients: FakeClient[];
  readonly codes = new Map<string, AuthorizationCode>();
  readonly accessTokens = new Map<string, AccessToken>();
  readonly refreshTokens = new Map<string, Grant>();
  /** Switches of the token answer: `scope` or the older `scopes`, `expires_in` as a number or a string. */
  tokenStyle: { scopeField: 'scope' | 'scopes'; expiresInAsString: boolean } = {
    scopeField: 'scope',
    expiresInAsString: false,
  };
  decision: Decision = null;

  constructor(
    fixtures: FakeFixtures,
    readonly ttlSeconds: number,
  ) {
    if (fixtures.clients.length === 0)
      throw new SkyError('invalid_config', 'fake Bitbucket fixtures have no client');
    this.clients = fixtures.clients;
    for (const user of fixtures.users) this.users.set(user.key, user);
    for (const workspace of fixtures.workspaces) this.workspaces.set(workspace.slug, workspace);
  }

  /** The user of the request's live access token, if any. */
  bearerUser(req: IncomingMessage): FakeUser | null {
    const presented = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const token = presented === undefined ? undefined : this.accessTokens.get(presented);
    if (!token || token.grant.revoked || token.expiresAt <= Date.now()) return null;
    return this.users.get(token.grant.user) ?? null;
  }

  memberships(user: FakeUser): { workspace: FakeWorkspace; permission: Permission }[] {
    return [...this.workspaces.values()].flatMap((workspace) => {
      const member = workspace.members.find((m) => m.user === user.key);
      return member ? [{ workspace, permission: member.permission }] : [];
    });
  }
}
