import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { BitbucketCloudConfig } from '../config/types';
import { SkyError } from '../errors';
import {
  loadFixtures,
  type FakeClient,
  type FakeFixtures,
  type FakeUser,
  type FakeWorkspace,
} from './fixtures';
import type { Permission } from './fixtures';
import { consentPage, errorPage, PAGE_CSP } from './pages';

/**
 * The fake Bitbucket Cloud of SPEC §10: a real HTTP server implementing §5.1 from fixture data, with
 * switches for faults. Shipped as `sky/testing`, so host apps can test their login against it too.
 */

export { loadFixtures };
export type { FakeClient, FakeFixtures, FakeUser, FakeWorkspace, Permission };

export interface Fault {
  /** Which requests: token, api, authorize, all (default), or a RegExp tested on the path. */
  match?: 'token' | 'api' | 'authorize' | 'all' | RegExp;
  /** Delay before answering (or before the other effects of this fault). */
  latencyMs?: number;
  /** Answer this status with a Bitbucket error body. */
  status?: number;
  /** Sent as Retry-After (use with status 429): seconds, or a string as is (an HTTP date). */
  retryAfter?: number | string;
  /** hang: never answer; malformed: invalid JSON; html: a 200 HTML page; huge: a 20 MB body; redirect: 302 to evil.example. */
  kind?: 'hang' | 'malformed' | 'html' | 'huge' | 'redirect';
  /** How many matching requests it applies to before it is removed (default: forever). */
  times?: number;
  /** How many matching requests pass untouched before it applies (e.g. fail only the second page). */
  skip?: number;
}

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

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  at: number;
  /** The fixture user whose access token the request carried, if any (API calls). */
  user?: string;
}

/** The optional endpoints a test can make disappear (Atlassian lists the 1.0 groups API as removed). */
export type OptionalEndpoint = '1.0 groups' | 'workspace permission';
const OPTIONAL_ROUTES: Record<OptionalEndpoint, RegExp> = {
  '1.0 groups': /^\/1\.0\/groups\//,
  'workspace permission': /^\/2\.0\/user\/workspaces\/[^/]+\/permission$/,
};

/** One consent of one user: every token issued from it dies when the user removes the app. */
interface Grant {
  user: string;
  revoked: boolean;
}
interface AccessToken {
  grant: Grant;
  expiresAt: number;
}
interface AuthorizationCode {
  user: string;
  client: string;
  /** The redirect_uri sent at authorize; the exchange must repeat it. */
  redirectUri: string | null;
  challenge: string | null;
  expiresAt: number;
}
type Decision = { as: string } | 'deny' | null;
type RouteKind = 'token' | 'authorize' | 'api';

const CODE_TTL_MS = 10 * 60_000;
const MAX_BODY_BYTES = 64 * 1024;
const HUGE_BODY_MB = 20;
const SCOPES = 'account email';

/** Endpoints Bitbucket removed (SPEC §5.1): clients must not call them. */
const REMOVED_ROUTES = [
  /^\/2\.0\/teams(\/|$)/,
  /^\/2\.0\/user\/permissions\/(teams|workspaces)(\/|$)/,
  /^\/2\.0\/workspaces(\/|$)/,
];

function routeKind(path: string): RouteKind {
  if (path === '/site/oauth2/access_token') return 'token';
  if (path === '/site/oauth2/authorize') return 'authorize';
  return 'api';
}

function faultMatches(fault: Fault, kind: RouteKind, path: string): boolean {
  const match = fault.match ?? 'all';
  return match instanceof RegExp ? match.test(path) : match === 'all' || match === kind;
}

/** Bitbucket accepts a redirect_uri equal to the registered callback URL or below it. */
function isBelowCallback(redirect: URL, callbackUrl: string): boolean {
  if (redirect.href === callbackUrl) return true;
  const callback = new URL(callbackUrl);
  const base = callback.pathname.endsWith('/') ? callback.pathname : `${callback.pathname}/`;
  return (
    redirect.origin === callback.origin &&
    (redirect.pathname === callback.pathname || redirect.pathname.startsWith(base))
  );
}

function parseRedirect(raw: string): URL | null {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : null;
  } catch {
    return null;
  }
}

/** HTTP Basic client credentials; the secret may itself contain a colon. */
function basicCredentials(header: string | undefined): { id: string; secret: string } | null {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header ?? '');
  if (!match?.[1]) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
}

function newToken(): string {
  return randomBytes(24).toString('base64url');
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) break;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(value));
}

/** Bitbucket's error body: {"type":"error","error":{"message":…}}. */
function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, { type: 'error', error: { message } }, headers);
}

/** RFC 6749 error body of the token endpoint. */
function sendOAuthError(res: ServerResponse, status: number, error: string, description: string): void {
  sendJson(res, status, { error, error_description: description });
}

function sendPage(res: ServerResponse, status: number, html: string): void {
  res
    .writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': PAGE_CSP })
    .end(html);
}

function groupMember(user: FakeUser): Record<string, string> {
  return {
    uuid: user.uuid,
    account_id: user.account_id,
    display_name: user.display_name,
    nickname: user.nickname,
    ...(user.username === undefined ? {} : { username: user.username }),
  };
}

export class FakeBitbucket {
  /** "http://127.0.0.1:<port>": serves both the web (OAuth) and the API routes. */
  readonly url: string;
  /** Every request, recorded before any fault applies. */
  readonly requests: RecordedRequest[] = [];
  /** Switches of the token answer: `scope` or the older `scopes`, `expires_in` as a number or a string. */
  tokenStyle: { scopeField: 'scope' | 'scopes'; expiresInAsString: boolean } = {
    scopeField: 'scope',
    expiresInAsString: false,
  };

  private readonly users = new Map<string, FakeUser>();
  private readonly workspaces = new Map<string, FakeWorkspace>();
  private readonly clients: FakeClient[];
  private readonly codes = new Map<string, AuthorizationCode>();
  private readonly accessTokens = new Map<string, AccessToken>();
  private readonly refreshTokens = new Map<string, Grant>();
  private readonly sockets = new Set<Socket>();
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private readonly ttlSeconds: number;
  private faults: (Fault & { left: number; toSkip: number })[] = [];
  private readonly removed = new Map<OptionalEndpoint, number>();
  private decision: Decision = null;
  private stopped = false;

  private constructor(
    private readonly server: Server,
    url: string,
    options: FakeBitbucketOptions,
  ) {
    this.url = url;
    const fixtures = structuredClone(options.fixtures ?? loadFixtures());
    if (fixtures.clients.length === 0)
      throw new SkyError('invalid_config', 'fake Bitbucket fixtures have no client');
    this.clients = fixtures.clients;
    for (const user of fixtures.users) this.users.set(user.key, user);
    for (const workspace of fixtures.workspaces) this.workspaces.set(workspace.slug, workspace);
    this.ttlSeconds = options.accessTokenTtlSeconds ?? 7200;
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
    return this.clients[0] as FakeClient;
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
    this.decision = userKey === null ? null : { as: userKey };
  }
  /** Authorize redirects back with error=access_denied, as when the user clicks Deny. */
  deny(): void {
    this.decision = 'deny';
  }
  setCallbackUrl(url: string | null): void {
    if (url === null) delete this.client.callbackUrl;
    else this.client.callbackUrl = url;
  }
  addFault(fault: Fault): void {
    this.faults.push({ ...fault, left: fault.times ?? Infinity, toSkip: fault.skip ?? 0 });
  }
  clearFaults(): void {
    this.faults = [];
  }
  addUser(user: FakeUser): void {
    this.users.set(user.key, structuredClone(user));
  }
  addWorkspace(workspace: FakeWorkspace): void {
    this.workspaces.set(workspace.slug, structuredClone(workspace));
  }
  joinWorkspace(userKey: string, slug: string, permission: Permission): void {
    const workspace = this.workspaces.get(slug);
    if (!workspace) throw new SkyError('not_found', `the fake Bitbucket has no workspace ${slug}`);
    workspace.members = workspace.members
      .filter((m) => m.user !== userKey)
      .concat({ user: userKey, permission });
  }
  /** A member no more: the user leaves the workspace (and its groups) upstream. */
  leaveWorkspace(userKey: string, slug: string): void {
    const workspace = this.workspaces.get(slug);
    if (!workspace) throw new SkyError('not_found', `the fake Bitbucket has no workspace ${slug}`);
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
    return this.requests.filter(
      (r) =>
        r.user === userKey &&
        (match === undefined || (typeof match === 'string' ? r.path.startsWith(match) : match.test(r.path))),
    ).length;
  }
  /** The user removed the app: their access tokens get 401 on the API, their refresh tokens invalid_grant. */
  revokeGrant(userKey: string): void {
    for (const token of this.accessTokens.values())
      if (token.grant.user === userKey) token.grant.revoked = true;
    for (const grant of this.refreshTokens.values()) if (grant.user === userKey) grant.revoked = true;
  }
  /** Every access token issued so far expires now; refresh tokens keep working. */
  expireAccessTokens(): void {
    for (const token of this.accessTokens.values()) token.expiresAt = 0;
  }
  /** The user's live access and refresh tokens: what must never appear in sky's store or logs. */
  tokensOf(userKey: string): string[] {
    const access = [...this.accessTokens].filter(([, t]) => t.grant.user === userKey).map(([value]) => value);
    const refresh = [...this.refreshTokens].filter(([, g]) => g.user === userKey).map(([value]) => value);
    return [...access, ...refresh];
  }
  /** Requests whose path starts with the string, or matches the RegExp. */
  count(match: string | RegExp): number {
    return this.requests.filter((r) =>
      typeof match === 'string' ? r.path.startsWith(match) : match.test(r.path),
    ).length;
  }
  resetRequests(): void {
    this.requests.length = 0;
  }
  /** Closes the server, hung and keep-alive connections included, and cancels pending latencies. */
  async stop(): Promise<void> {
    this.stopped = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const sleep of this.sleeps) {
      clearTimeout(sleep.timer);
      sleep.wake();
    }
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    this.record(req, url);
    const body = await readBody(req);
    if (await this.applyFault(res, url.pathname)) return;
    const kind = routeKind(url.pathname);
    if (kind === 'authorize') return this.authorize(req, res, url, body);
    if (kind === 'token' && req.method === 'POST') return this.token(req, res, body);
    if (REMOVED_ROUTES.some((r) => r.test(url.pathname)))
      return sendError(res, 410, 'This API is no longer available.');
    for (const [endpoint, status] of this.removed) {
      if (OPTIONAL_ROUTES[endpoint].test(url.pathname))
        return sendError(res, status, status === 403 ? 'Forbidden.' : 'This API is no longer available.');
    }
    return this.api(req, res, url);
  }

  private record(req: IncomingMessage, url: URL): void {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const user = this.bearerUser(req)?.key;
    this.requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      at: Date.now(),
      ...(user === undefined ? {} : { user }),
    });
  }

  /** Applies the first matching fault, in the order added; true when the request is taken care of. */
  private async applyFault(res: ServerResponse, path: string): Promise<boolean> {
    const kind = routeKind(path);
    const fault = this.faults.find((f) => faultMatches(f, kind, path));
    if (!fault) return false;
    if (fault.toSkip > 0) {
      fault.toSkip--;
      return false;
    }
    fault.left--;
    if (fault.left <= 0) this.faults = this.faults.filter((f) => f !== fault);
    if (fault.latencyMs) await this.sleep(fault.latencyMs);
    if (this.stopped) return true;
    switch (fault.kind) {
      case 'hang':
        return true; // never answer; stop() destroys the socket
      case 'malformed':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"values": [{"type": "us');
        return true;
      case 'html':
        res
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<html><body>Down for maintenance</body></html>');
        return true;
      case 'redirect':
        res.writeHead(302, { location: 'http://evil.example/' }).end();
        return true;
      case 'huge':
        this.sendHuge(res);
        return true;
      case undefined:
        break;
    }
    if (fault.status === undefined) return false; // latency only: then answer normally
    const retryAfter: Record<string, string> =
      fault.retryAfter === undefined ? {} : { 'retry-after': String(fault.retryAfter) };
    sendError(res, fault.status, `Fault injected by the fake Bitbucket (HTTP ${fault.status}).`, retryAfter);
    return true;
  }

  /** A 20 MB JSON-typed body, so clients must bound what they read. */
  private sendHuge(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    for (let i = 0; i < HUGE_BODY_MB && !res.destroyed; i++) res.write(chunk);
    res.end();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => entry.wake(), ms),
        wake: () => {
          this.sleeps.delete(entry);
          resolve();
        },
      };
      this.sleeps.add(entry);
    });
  }

  private authorize(req: IncomingMessage, res: ServerResponse, url: URL, body: string): void {
    const params = req.method === 'POST' ? new URLSearchParams(body) : url.searchParams;
    const client = this.clients.find((c) => c.id === params.get('client_id'));
    if (!client)
      return sendPage(res, 400, errorPage('Invalid client', 'No OAuth consumer has this client_id.'));
    if (params.get('response_type') !== 'code')
      return sendPage(res, 400, errorPage('Invalid request', 'response_type must be code.'));
    const back = parseRedirect(params.get('redirect_uri') ?? client.callbackUrl ?? '');
    if (!back || (client.callbackUrl !== undefined && !isBelowCallback(back, client.callbackUrl))) {
      const message = 'The redirect_uri does not match the callback URL of the OAuth consumer.';
      return sendPage(res, 400, errorPage('Invalid redirect_uri', message));
    }
    const decision = req.method === 'POST' ? this.postedDecision(params) : this.decision;
    if (decision === null) return sendPage(res, 200, consentPage(params, [...this.users.values()]));
    if (decision !== 'deny' && !this.users.has(decision.as))
      return sendPage(res, 400, errorPage('Unknown user', 'Choose one of the fixture users.'));
    if (decision === 'deny') {
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', 'The user denied access.');
    } else {
      back.searchParams.set('code', this.issueCode(decision.as, client.id, params));
    }
    const state = params.get('state');
    if (state !== null) back.searchParams.set('state', state);
    res.writeHead(302, { location: back.href }).end();
  }

  private postedDecision(form: URLSearchParams): Decision {
    return form.get('decision') === 'grant' ? { as: form.get('user') ?? '' } : 'deny';
  }

  private issueCode(user: string, client: string, params: URLSearchParams): string {
    const code = randomBytes(16).toString('hex');
    this.codes.set(code, {
      user,
      client,
      redirectUri: params.get('redirect_uri'),
      challenge: params.get('code_challenge'),
      expiresAt: Date.now() + CODE_TTL_MS,
    });
    return code;
  }

  private token(req: IncomingMessage, res: ServerResponse, body: string): void {
    const credentials = basicCredentials(req.headers.authorization);
    const client = this.clients.find((c) => c.id === credentials?.id && c.secret === credentials.secret);
    if (!client)
      return sendOAuthError(
        res,
        401,
        'invalid_client',
        'Client credentials must be sent with HTTP Basic authentication.',
      );
    const form = new URLSearchParams(body);
    const grantType = form.get('grant_type');
    let grant: Grant;
    if (grantType === 'authorization_code') {
      const found = this.redeemCode(form, client.id);
      if (typeof found === 'string') return sendOAuthError(res, 400, 'invalid_grant', found);
      grant = { user: found.user, revoked: false };
    } else if (grantType === 'refresh_token') {
      const presented = form.get('refresh_token') ?? '';
      const found = this.refreshTokens.get(presented);
      this.refreshTokens.delete(presented); // rotation: a refresh token works once
      if (!found || found.revoked) return sendOAuthError(res, 400, 'invalid_grant', 'Invalid refresh_token.');
      grant = found;
    } else {
      return sendOAuthError(
        res,
        400,
        'unsupported_grant_type',
        'grant_type must be authorization_code or refresh_token.',
      );
    }
    const access = newToken();
    const refresh = newToken();
    this.accessTokens.set(access, { grant, expiresAt: Date.now() + this.ttlSeconds * 1000 });
    this.refreshTokens.set(refresh, grant);
    sendJson(res, 200, {
      access_token: access,
      token_type: 'bearer',
      expires_in: this.tokenStyle.expiresInAsString ? String(this.ttlSeconds) : this.ttlSeconds,
      refresh_token: refresh,
      [this.tokenStyle.scopeField]: SCOPES,
      state: grantType, // Bitbucket echoes the grant type here
    });
  }

  /** The code, once; or why it is refused. */
  private redeemCode(form: URLSearchParams, clientId: string): AuthorizationCode | string {
    const presented = form.get('code') ?? '';
    const code = this.codes.get(presented);
    this.codes.delete(presented);
    if (!code || code.expiresAt < Date.now() || code.client !== clientId)
      return 'Invalid, expired or used code.';
    if (code.redirectUri !== null && code.redirectUri !== form.get('redirect_uri'))
      return 'redirect_uri mismatch.';
    if (code.challenge !== null && s256(form.get('code_verifier') ?? '') !== code.challenge)
      return 'PKCE verification failed.';
    return code;
  }

  private bearerUser(req: IncomingMessage): FakeUser | null {
    const presented = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const token = presented === undefined ? undefined : this.accessTokens.get(presented);
    if (!token || token.grant.revoked || token.expiresAt <= Date.now()) return null;
    return this.users.get(token.grant.user) ?? null;
  }

  private memberships(user: FakeUser): { workspace: FakeWorkspace; permission: Permission }[] {
    return [...this.workspaces.values()].flatMap((workspace) => {
      const member = workspace.members.find((m) => m.user === user.key);
      return member ? [{ workspace, permission: member.permission }] : [];
    });
  }

  private api(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (url.searchParams.has('access_token'))
      return sendError(res, 401, 'Access tokens in the query string are no longer accepted.');
    const user = this.bearerUser(req);
    if (!user) return sendError(res, 401, 'Access token expired, revoked or invalid.');
    const route = url.pathname;
    if (route === '/2.0/user') {
      const { key: _key, emails: _emails, ...fields } = user;
      return sendJson(res, 200, { type: 'user', ...fields, links: {} });
    }
    if (route === '/2.0/user/emails')
      return this.paged(
        res,
        url,
        user.emails.map((e) => ({ ...e, type: 'email' })),
      );
    if (route === '/2.0/user/workspaces')
      return this.paged(
        res,
        url,
        this.memberships(user).map(({ workspace: w, permission }) => ({
          type: 'workspace_access',
          administrator: permission === 'owner',
          workspace: { type: 'workspace', slug: w.slug, uuid: w.uuid, name: w.name },
        })),
      );
    const permission = /^\/2\.0\/user\/workspaces\/([^/]+)\/permission$/.exec(route)?.[1];
    if (permission !== undefined) return this.permission(res, user, decodeURIComponent(permission));
    const groups = /^\/1\.0\/groups\/([^/]+)\/?$/.exec(route)?.[1];
    if (groups !== undefined) return this.groups(res, user, decodeURIComponent(groups));
    return sendError(res, 404, `Resource not found: ${route}`);
  }

  private permission(res: ServerResponse, user: FakeUser, slug: string): void {
    const membership = this.memberships(user).find((m) => m.workspace.slug === slug);
    if (!membership) return sendError(res, 404, `You are not a member of workspace ${slug}.`);
    const { workspace: w } = membership;
    sendJson(res, 200, {
      type: 'workspace_membership',
      permission: membership.permission,
      workspace: { type: 'workspace', slug: w.slug, uuid: w.uuid, name: w.name },
    });
  }

  /** The 1.0 groups API answers workspace administrators only. */
  private groups(res: ServerResponse, user: FakeUser, slug: string): void {
    const workspace = this.workspaces.get(slug);
    if (!workspace) return sendError(res, 404, `No workspace ${slug}.`);
    if (workspace.members.find((m) => m.user === user.key)?.permission !== 'owner')
      return sendError(res, 403, 'You must be an administrator of this workspace to list its groups.');
    const known = (key: string): FakeUser[] => {
      const member = this.users.get(key);
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

  /** Bitbucket paging: `page` and `pagelen` (≤ 100); `next` an absolute URL, only when more remain. */
  private paged(res: ServerResponse, url: URL, all: unknown[]): void {
    const pagelen = Number(url.searchParams.get('pagelen') ?? 10);
    const page = Number(url.searchParams.get('page') ?? 1);
    if (!Number.isInteger(pagelen) || pagelen < 1 || pagelen > 100)
      return sendError(res, 400, 'pagelen must be an integer from 1 to 100.');
    if (!Number.isInteger(page) || page < 1) return sendError(res, 400, 'page must be a positive integer.');
    const values = all.slice((page - 1) * pagelen, page * pagelen);
    const body: Record<string, unknown> = { pagelen, page, size: all.length, values };
    if (page * pagelen < all.length) {
      const next = new URL(url.pathname + url.search, this.url);
      next.searchParams.set('pagelen', String(pagelen));
      next.searchParams.set('page', String(page + 1));
      body['next'] = next.href;
    }
    sendJson(res, 200, body);
  }
}
