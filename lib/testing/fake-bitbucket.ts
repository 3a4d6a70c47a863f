import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { BitbucketCloudConfig } from '../bitbucket/settings';
import { SkyError } from '../errors';
import { api, type OptionalEndpoint } from './fake/api';
import { Faults, routeKind, type Fault } from './fake/faults';
import { readBody, sendError, urlHost } from './fake/http';
import { authorize, token } from './fake/oauth';
import { pathMatches, recordOf, type RecordedRequest } from './fake/recording';
import { FakeState } from './fake/state';
import {
  loadFixtures,
  type FakeClient,
  type FakeFixtures,
  type FakeUser,
  type FakeWorkspace,
} from './fixtures';
import type { Permission } from './fixtures';

/**
 * The fake Bitbucket Cloud of SPEC §10: a real HTTP server implementing §5.1 from fixture data, with
 * switches for faults. Shipped as `sky/testing`, so host apps can test their login against it too.
 * This file is the server and its switches; ./fake holds the OAuth server, the REST API, the faults and
 * the recording.
 */

export { loadFixtures };
export type {
  Fault,
  FakeClient,
  FakeFixtures,
  FakeUser,
  FakeWorkspace,
  OptionalEndpoint,
  Permission,
  RecordedRequest,
};

export interface FakeBitbucketOptions {
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** Listen port (default: a free one). */
  port?: number;
  /** Default: loadFixtures(). Copied, so a test's changes never leak into the caller's object. */
  fixtures?: FakeFixtures;
  /** Lifetime of access tokens (default 7200, as Bitbucket). */
  accessTokenTtlSeconds?: number;
}

export class FakeBitbucket {
  /** "http://127.0.0.1:<port>": serves both the web (OAuth) and the API routes. */
  readonly url: string;
  /** Every request, recorded before any fault applies. */
  readonly requests: RecordedRequest[] = [];

  private readonly state: FakeState;
  private readonly faults = new Faults();
  private readonly removed = new Map<OptionalEndpoint, number>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    url: string,
    options: FakeBitbucketOptions,
  ) {
    this.url = url;
    this.state = new FakeState(
      structuredClone(options.fixtures ?? loadFixtures()),
      options.accessTokenTtlSeconds ?? 7200,
    );
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) sendError(res, 500, 'fake Bitbucket failed');
        else res.destroy();
      });
    });
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  static async start(options: FakeBitbucketOptions = {}): Promise<FakeBitbucket> {
    const host = options.host ?? '127.0.0.1';
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    return new FakeBitbucket(server, `http://${urlHost(host)}:${port}`, options);
  }

  get webUrl(): string {
    return this.url;
  }
  get apiUrl(): string {
    return this.url;
  }
  /** The first fixture client: the id and secret default configs use. */
  get client(): FakeClient {
    return this.state.clients[0] as FakeClient;
  }
  /** Switches of the token answer: `scope` or the older `scopes`, `expires_in` as a number or a string. */
  get tokenStyle(): FakeState['tokenStyle'] {
    return this.state.tokenStyle;
  }
  set tokenStyle(style: FakeState['tokenStyle']) {
    this.state.tokenStyle = style;
  }

  /** A connector config against this fake: small timeout and 2 retries, so fault tests stay fast. */
  connectorConfig(overrides: Partial<BitbucketCloudConfig> = {}): BitbucketCloudConfig {
    return {
      id: 'bitbucket-cloud',
      name: 'Bitbucket Cloud',
      clientId: this.client.id,
      clientSecret: this.client.secret,
      webUrl: this.webUrl,
      apiUrl: this.apiUrl,
      teams: [],
      includeTeamGroups: false,
      getWorkspacePermissions: false,
      timeoutMs: 1_000,
      retries: 2,
      concurrency: 8,
      ...overrides,
    };
  }

  /** Authorize auto-consents as this user; null shows the consent page (the default). */
  consentAs(userKey: string | null): void {
    this.state.decision = userKey === null ? null : { as: userKey };
  }
  /** Authorize redirects back with error=access_denied, as when the user clicks Deny. */
  deny(): void {
    this.state.decision = 'deny';
  }
  setCallbackUrl(url: string | null): void {
    if (url === null) delete this.client.callbackUrl;
    else this.client.callbackUrl = url;
  }
  addFault(fault: Fault): void {
    this.faults.add(fault);
  }
  clearFaults(): void {
    this.faults.clear();
  }
  addUser(user: FakeUser): void {
    this.state.users.set(user.key, structuredClone(user));
  }
  addWorkspace(workspace: FakeWorkspace): void {
    this.state.workspaces.set(workspace.slug, structuredClone(workspace));
  }
  joinWorkspace(userKey: string, slug: string, permission: Permission): void {
    const workspace = this.workspace(slug);
    workspace.members = workspace.members
      .filter((m) => m.user !== userKey)
      .concat({ user: userKey, permission });
  }
  /** A member no more: the user leaves the workspace (and its groups) upstream. */
  leaveWorkspace(userKey: string, slug: string): void {
    const workspace = this.workspace(slug);
    workspace.members = workspace.members.filter((m) => m.user !== userKey);
    for (const group of workspace.groups) group.members = group.members.filter((m) => m !== userKey);
  }
  /** The endpoint answers `status` (404 or 410: gone; 403: refused) to every call until restored. */
  removeEndpoint(endpoint: OptionalEndpoint, status: 403 | 404 | 410 = 410): void {
    this.removed.set(endpoint, status);
  }
  restoreEndpoint(endpoint: OptionalEndpoint): void {
    this.removed.delete(endpoint);
  }
  /** API calls made with `userKey`'s access tokens (matching `match`, when given). */
  callsOf(userKey: string, match?: string | RegExp): number {
    return this.requests.filter((r) => r.user === userKey && (match === undefined || pathMatches(r, match)))
      .length;
  }
  /** The user removed the app: their access tokens get 401 on the API, their refresh tokens invalid_grant. */
  revokeGrant(userKey: string): void {
    for (const t of this.state.accessTokens.values()) if (t.grant.user === userKey) t.grant.revoked = true;
    for (const grant of this.state.refreshTokens.values()) if (grant.user === userKey) grant.revoked = true;
  }
  /** Every access token issued so far expires now; refresh tokens keep working. */
  expireAccessTokens(): void {
    for (const t of this.state.accessTokens.values()) t.expiresAt = 0;
  }
  /** The user's live access and refresh tokens: what must never appear in sky's store or logs. */
  tokensOf(userKey: string): string[] {
    const { accessTokens, refreshTokens } = this.state;
    const access = [...accessTokens].filter(([, t]) => t.grant.user === userKey).map(([value]) => value);
    const refresh = [...refreshTokens].filter(([, g]) => g.user === userKey).map(([value]) => value);
    return [...access, ...refresh];
  }
  /** Requests whose path starts with the string, or matches the RegExp. */
  count(match: string | RegExp): number {
    return this.requests.filter((r) => pathMatches(r, match)).length;
  }
  resetRequests(): void {
    this.requests.length = 0;
  }
  /** Closes the server, hung and keep-alive connections included, and cancels pending latencies. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.faults.stop();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private workspace(slug: string): FakeWorkspace {
    const workspace = this.state.workspaces.get(slug);
    if (!workspace) throw new SkyError('not_found', `the fake Bitbucket has no workspace ${slug}`);
    return workspace;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    this.requests.push(recordOf(req, url, this.state.bearerUser(req)?.key));
    const body = await readBody(req);
    if (await this.faults.apply(res, url.pathname)) return;
    const kind = routeKind(url.pathname);
    if (kind === 'authorize') return authorize(this.state, req, res, url, body);
    if (kind === 'token' && req.method === 'POST') return token(this.state, req, res, body);
    return api(this.state, this.removed, req, res, url);
  }
}
