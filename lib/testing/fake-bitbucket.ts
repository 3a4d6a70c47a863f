import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';

/**
 * The fake Bitbucket Cloud of SPEC §10: a real HTTP server implementing §5.1 from fixture data, with
 * switches for faults. Shipped as `sky/testing`, so host apps can test their login against it too.
 */

export type Permission = 'owner' | 'create-project' | 'member' | 'collaborator';
export interface FakeUser {
  key: string;
  uuid: string;
  account_id: string;
  username?: string;
  nickname: string;
  display_name: string;
  emails: { email: string; is_primary: boolean; is_confirmed: boolean }[];
}
export interface FakeWorkspace {
  slug: string;
  uuid: string;
  name: string;
  members: { user: string; permission: Permission }[];
  groups: { name: string; slug: string; members: string[] }[];
}
export interface FakeClient {
  id: string;
  secret: string;
  callbackUrl?: string;
}
export interface FakeFixtures {
  clients: FakeClient[];
  users: FakeUser[];
  workspaces: FakeWorkspace[];
}
export interface Fault {
  /** Which requests: token, api, authorize, all (default), or a RegExp on the path. */
  match?: 'token' | 'api' | 'authorize' | 'all' | RegExp;
  latencyMs?: number;
  status?: number;
  retryAfter?: number;
  kind?: 'hang' | 'malformed' | 'html' | 'huge' | 'redirect';
  /** How many matching requests it applies to (default: all). */
  times?: number;
}
export interface FakeBitbucketOptions {
  host?: string;
  port?: number;
  fixtures?: FakeFixtures;
  accessTokenTtlSeconds?: number;
}
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  at: number;
}

interface Grant {
  user: string;
  revoked: boolean;
}
interface AccessToken {
  grant: Grant;
  expiresAt: number;
}
interface Code {
  user: string;
  client: string;
  redirectUri: string | null;
  challenge: string | null;
  expiresAt: number;
  grant: Grant;
}

const REMOVED = [
  /^\/2\.0\/teams(\/|$)/,
  /^\/2\.0\/user\/permissions\/(teams|workspaces)(\/|$)/,
  /^\/2\.0\/workspaces(\/|$)/,
];

export function loadFixtures(
  file = path.join(__dirname, '..', '..', 'fixtures', 'bitbucket.json'),
): FakeFixtures {
  return JSON.parse(readFileSync(file, 'utf8')) as FakeFixtures;
}

const escape = (v: string): string => v.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export class FakeBitbucket {
  readonly requests: RecordedRequest[] = [];
  tokenStyle: { scopeField: 'scope' | 'scopes'; expiresInAsString: boolean } = {
    scopeField: 'scope',
    expiresInAsString: false,
  };
  private readonly users = new Map<string, FakeUser>();
  private readonly workspaces = new Map<string, FakeWorkspace>();
  private readonly clients: FakeClient[];
  private readonly codes = new Map<string, Code>();
  private readonly accessTokens = new Map<string, AccessToken>();
  private readonly refreshTokens = new Map<string, Grant>();
  private readonly sockets = new Set<Socket>();
  private faults: (Fault & { left: number })[] = [];
  private consent: { as: string } | 'deny' | null = null;
  private readonly ttlMs: number;
  private server!: Server;
  url = '';

  private constructor(options: FakeBitbucketOptions) {
    const fixtures = structuredClone(options.fixtures ?? loadFixtures());
    this.clients = fixtures.clients;
    for (const u of fixtures.users) this.users.set(u.key, u);
    for (const w of fixtures.workspaces) this.workspaces.set(w.slug, w);
    this.ttlMs = (options.accessTokenTtlSeconds ?? 7200) * 1000;
  }

  static async start(options: FakeBitbucketOptions = {}): Promise<FakeBitbucket> {
    const fake = new FakeBitbucket(options);
    const host = options.host ?? '127.0.0.1';
    fake.server = createServer((req, res) => {
      fake.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    fake.server.on('connection', (s: Socket) => {
      fake.sockets.add(s);
      s.on('close', () => fake.sockets.delete(s));
    });
    await new Promise<void>((resolve) => fake.server.listen(options.port ?? 0, host, resolve));
    const address = fake.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    fake.url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
    return fake;
  }

  get webUrl(): string {
    return this.url;
  }
  get apiUrl(): string {
    return this.url;
  }
  get client(): FakeClient {
    return this.clients[0] as FakeClient;
  }

  consentAs(userKey: string | null): void {
    this.consent = userKey === null ? null : { as: userKey };
  }
  deny(): void {
    this.consent = 'deny';
  }
  setCallbackUrl(url: string | null): void {
    if (url === null) delete this.client.callbackUrl;
    else this.client.callbackUrl = url;
  }
  addFault(fault: Fault): void {
    this.faults.push({ ...fault, left: fault.times ?? Infinity });
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
    const ws = this.workspaces.get(slug);
    if (!ws) throw new Error(`no fake workspace ${slug}`);
    ws.members = ws.members.filter((m) => m.user !== userKey).concat({ user: userKey, permission });
  }
  /** The user removed the app: their access tokens stop working and their refresh tokens are refused. */
  revokeGrant(userKey: string): void {
    for (const t of this.accessTokens.values()) if (t.grant.user === userKey) t.grant.revoked = true;
    for (const g of this.refreshTokens.values()) if (g.user === userKey) g.revoked = true;
  }
  expireAccessTokens(): void {
    for (const t of this.accessTokens.values()) t.expiresAt = 0;
  }
  count(match: string | RegExp): number {
    return this.requests.filter((r) =>
      typeof match === 'string' ? r.path.startsWith(match) : match.test(r.path),
    ).length;
  }
  resetRequests(): void {
    this.requests.length = 0;
  }
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const route = url.pathname;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    this.requests.push({
      method: req.method ?? 'GET',
      path: route,
      query: Object.fromEntries(url.searchParams),
      headers,
      at: Date.now(),
    });
    const body = await readBody(req);
    const kind = route.startsWith('/site/oauth2/access_token')
      ? 'token'
      : route.startsWith('/site/oauth2/authorize')
        ? 'authorize'
        : 'api';
    const fault = this.faults.find((f) => {
      const m = f.match ?? 'all';
      return f.left > 0 && (m === 'all' || m === kind || (m instanceof RegExp && m.test(route)));
    });
    if (fault) {
      fault.left--;
      if (fault.latencyMs) await new Promise((r) => setTimeout(r, fault.latencyMs));
      if (fault.kind === 'hang') return; // never answer; stop() destroys the socket
      if (fault.kind === 'malformed')
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"values": [');
      if (fault.kind === 'html')
        return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>');
      if (fault.kind === 'redirect')
        return void res.writeHead(302, { location: 'http://evil.example/' }).end();
      if (fault.kind === 'huge') {
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(1024 * 1024, 0x20);
        for (let i = 0; i < 20 && !res.destroyed; i++) res.write(chunk);
        return void res.end();
      }
      if (fault.status) {
        const extra: Record<string, string> =
          fault.retryAfter === undefined ? {} : { 'retry-after': String(fault.retryAfter) };
        return this.error(res, fault.status, `fault ${fault.status}`, extra);
      }
    }
    if (route === '/site/oauth2/authorize') return this.authorize(req, res, url, body);
    if (route === '/site/oauth2/access_token' && req.method === 'POST') return this.token(req, res, body);
    if (REMOVED.some((r) => r.test(route))) return this.error(res, 410, 'This API is no longer available.');
    return this.api(req, res, url);
  }

  private error(
    res: ServerResponse,
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ): void {
    res
      .writeHead(status, { 'content-type': 'application/json', ...headers })
      .end(JSON.stringify({ type: 'error', error: { message } }));
  }

  private page(res: ServerResponse, status: number, title: string, body: string): void {
    res
      .writeHead(status, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action *",
      })
      .end(
        `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>` +
          `<style>body{font:16px system-ui,sans-serif;color:#172b4d;background:#f4f5f7}main{max-width:30rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px}` +
          `button{padding:.6rem 1rem;margin-right:.5rem;border:0;border-radius:4px;font:inherit;cursor:pointer}.grant{background:#0052cc;color:#fff}.deny{background:#dfe1e6;color:#172b4d}label{display:block;margin:1rem 0 .25rem;font-weight:600}select{font:inherit;padding:.4rem}</style>` +
          `</head><body><main><h1>${escape(title)}</h1>${body}</main></body></html>`,
      );
  }

  private authorize(req: IncomingMessage, res: ServerResponse, url: URL, body: string): void {
    const params = req.method === 'POST' ? new URLSearchParams(body) : url.searchParams;
    const client = this.clients.find((c) => c.id === params.get('client_id'));
    if (!client) return this.page(res, 400, 'Invalid client', '<p>No OAuth consumer has this client_id.</p>');
    if (params.get('response_type') !== 'code')
      return this.page(res, 400, 'Invalid request', '<p>response_type must be code.</p>');
    const redirectUri = params.get('redirect_uri') ?? client.callbackUrl;
    if (!redirectUri || (client.callbackUrl && !redirectUri.startsWith(client.callbackUrl))) {
      return this.page(
        res,
        400,
        'Invalid redirect_uri',
        '<p>The redirect_uri does not match the callback URL of the OAuth consumer.</p>',
      );
    }
    const back = new URL(redirectUri);
    const state = params.get('state');
    const decide = (user: string | null): void => {
      if (user === null) {
        back.searchParams.set('error', 'access_denied');
        back.searchParams.set('error_description', 'The user denied access.');
      } else {
        const code = randomBytes(16).toString('hex');
        this.codes.set(code, {
          user,
          client: client.id,
          redirectUri: params.get('redirect_uri'),
          challenge: params.get('code_challenge'),
          expiresAt: Date.now() + 10 * 60_000,
          grant: { user, revoked: false },
        });
        back.searchParams.set('code', code);
      }
      if (state !== null) back.searchParams.set('state', state);
      res.writeHead(302, { location: back.href }).end();
    };
    if (req.method === 'POST') {
      const user = params.get('user') ?? '';
      if (params.get('decision') !== 'grant') return decide(null);
      if (!this.users.has(user)) return this.page(res, 400, 'Unknown user', '<p>Choose a fixture user.</p>');
      return decide(user);
    }
    if (this.consent === 'deny') return decide(null);
    if (this.consent) return decide(this.consent.as);
    const hidden = [...params]
      .map(([k, v]) => `<input type="hidden" name="${escape(k)}" value="${escape(v)}">`)
      .join('');
    const options = [...this.users.values()]
      .map(
        (u) =>
          `<option value="${escape(u.key)}">${escape(u.display_name)} (${escape(u.username ?? `nickname ${u.nickname}`)})</option>`,
      )
      .join('');
    this.page(
      res,
      200,
      'Fake Bitbucket Cloud: grant access',
      `<p>sky (a CI web node) wants to read your account and email addresses. This is the bundled fake Bitbucket: choose who you are.</p>` +
        `<form method="post" action="/site/oauth2/authorize">${hidden}<label for="user">Log in as</label><select id="user" name="user">${options}</select>` +
        `<p><button class="grant" type="submit" name="decision" value="grant">Grant access</button><button class="deny" type="submit" name="decision" value="deny">Deny</button></p></form>`,
    );
  }

  private token(req: IncomingMessage, res: ServerResponse, body: string): void {
    const auth = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    const [id, secret] = auth
      ? Buffer.from(auth[1] as string, 'base64')
          .toString()
          .split(':')
      : [];
    const client = this.clients.find((c) => c.id === id && c.secret === secret);
    const oauthError = (status: number, error: string, description: string): void => {
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error, error_description: description }));
    };
    if (!client)
      return oauthError(
        401,
        'invalid_client',
        'Client credentials must be sent with HTTP Basic authentication.',
      );
    const form = new URLSearchParams(body);
    let grant: Grant;
    if (form.get('grant_type') === 'authorization_code') {
      const code = this.codes.get(form.get('code') ?? '');
      this.codes.delete(form.get('code') ?? '');
      if (!code || code.expiresAt < Date.now() || code.client !== client.id)
        return oauthError(400, 'invalid_grant', 'Invalid or used code.');
      if (code.redirectUri !== null && code.redirectUri !== form.get('redirect_uri'))
        return oauthError(400, 'invalid_grant', 'redirect_uri mismatch.');
      if (code.challenge) {
        const verifier = form.get('code_verifier') ?? '';
        if (createHash('sha256').update(verifier).digest('base64url') !== code.challenge)
          return oauthError(400, 'invalid_grant', 'PKCE verification failed.');
      }
      grant = code.grant;
    } else if (form.get('grant_type') === 'refresh_token') {
      const old = form.get('refresh_token') ?? '';
      const found = this.refreshTokens.get(old);
      this.refreshTokens.delete(old); // rotation: the old refresh token dies
      if (!found || found.revoked) return oauthError(400, 'invalid_grant', 'Invalid refresh_token.');
      grant = found;
    } else {
      return oauthError(400, 'unsupported_grant_type', 'Unsupported grant_type.');
    }
    const access = randomBytes(24).toString('base64url');
    const refresh = randomBytes(24).toString('base64url');
    this.accessTokens.set(access, { grant, expiresAt: Date.now() + this.ttlMs });
    this.refreshTokens.set(refresh, grant);
    const ttl = Math.round(this.ttlMs / 1000);
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        access_token: access,
        token_type: 'bearer',
        expires_in: this.tokenStyle.expiresInAsString ? String(ttl) : ttl,
        refresh_token: refresh,
        [this.tokenStyle.scopeField]: 'account email',
        state: 'authorization_code',
      }),
    );
  }

  private api(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (url.searchParams.has('access_token'))
      return this.error(res, 401, 'Access tokens in the query string are not accepted.');
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const token = bearer ? this.accessTokens.get(bearer) : undefined;
    if (!token || token.grant.revoked || token.expiresAt <= Date.now())
      return this.error(res, 401, 'Access token expired or invalid.');
    const user = this.users.get(token.grant.user);
    if (!user) return this.error(res, 401, 'No such user.');
    const memberships = [...this.workspaces.values()].flatMap((w) => {
      const m = w.members.find((x) => x.user === user.key);
      return m ? [{ workspace: w, permission: m.permission }] : [];
    });
    const route = url.pathname;
    const json = (value: unknown): void =>
      void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    if (route === '/2.0/user') {
      const { key: _key, emails: _emails, ...fields } = user;
      return json({ type: 'user', ...fields, links: {} });
    }
    if (route === '/2.0/user/emails')
      return this.paged(
        res,
        url,
        user.emails.map((e) => ({ type: 'email', ...e })),
      );
    if (route === '/2.0/user/workspaces') {
      return this.paged(
        res,
        url,
        memberships.map(({ workspace: w, permission }) => ({
          type: 'workspace_access',
          administrator: permission === 'owner',
          workspace: { type: 'workspace', slug: w.slug, uuid: w.uuid, name: w.name },
        })),
      );
    }
    const permission = /^\/2\.0\/user\/workspaces\/([^/]+)\/permission$/.exec(route);
    if (permission) {
      const m = memberships.find((x) => x.workspace.slug === decodeURIComponent(permission[1] as string));
      if (!m) return this.error(res, 404, 'Not a member of this workspace.');
      return json({
        type: 'workspace_membership',
        permission: m.permission,
        workspace: { slug: m.workspace.slug, uuid: m.workspace.uuid },
      });
    }
    const groups = /^\/1\.0\/groups\/([^/]+)\/?$/.exec(route);
    if (groups) {
      const ws = this.workspaces.get(decodeURIComponent(groups[1] as string));
      if (!ws) return this.error(res, 404, 'No such workspace.');
      if (ws.members.find((m) => m.user === user.key)?.permission !== 'owner')
        return this.error(res, 403, 'You must be an administrator of this workspace.');
      return json(
        ws.groups.map((g) => ({
          name: g.name,
          slug: g.slug,
          members: g.members.flatMap((k) => {
            const u = this.users.get(k);
            return u
              ? [
                  {
                    uuid: u.uuid,
                    account_id: u.account_id,
                    display_name: u.display_name,
                    nickname: u.nickname,
                    ...(u.username ? { username: u.username } : {}),
                  },
                ]
              : [];
          }),
        })),
      );
    }
    return this.error(res, 404, `No route ${route}`);
  }

  /** Bitbucket paging: page and pagelen (≤ 100), `next` an absolute URL when more remain. */
  private paged(res: ServerResponse, url: URL, all: unknown[]): void {
    const pagelen = Number(url.searchParams.get('pagelen') ?? 10);
    const page = Number(url.searchParams.get('page') ?? 1);
    if (!Number.isInteger(pagelen) || pagelen < 1 || pagelen > 100)
      return this.error(res, 400, 'pagelen must be 1-100');
    if (!Number.isInteger(page) || page < 1) return this.error(res, 400, 'page must be a positive integer');
    const values = all.slice((page - 1) * pagelen, page * pagelen);
    const body: Record<string, unknown> = { pagelen, page, size: all.length, values };
    if (page * pagelen < all.length) {
      const next = new URL(url.pathname, this.url);
      next.searchParams.set('pagelen', String(pagelen));
      next.searchParams.set('page', String(page + 1));
      body['next'] = next.href;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) break;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
