import { setTimeout as sleep } from 'node:timers/promises';
import type { BitbucketCloudConfig } from './settings';
import type { UpstreamTokens } from '../connector';

import { OptionalCalls } from './optional';
import { SkyError } from '../errors';
import type { Logger } from '../log';

/** The Bitbucket Cloud REST API as it is in 2026 (SPEC §5.1). The only file that knows its URLs. */

export interface BitbucketUser {
  uuid: string;
  account_id: string;
  username?: string;
  nickname: string;
  display_name: string;
}
export interface BitbucketEmail {
  email: string;
  is_primary: boolean;
  is_confirmed: boolean;
}
export interface BitbucketWorkspaceAccess {
  administrator: boolean;
  workspace: { slug: string; uuid: string };
}
export type WorkspacePermission = 'owner' | 'create-project' | 'member' | 'collaborator';
export interface BitbucketGroup {
  name: string;
  slug: string;
  members: { uuid: string; account_id?: string }[];
}

/** The most sky reads of one answer (the token request's sockets have the same cap). */
export const MAX_BODY_BYTES = 1024 * 1024;
const MAX_PAGES = 100;
const MAX_RETRY_AFTER_MS = 2_000;
/** What sky asks for: the account and its email addresses (SPEC §4.1). */
export const SCOPE = 'account email';

/** HTTP Basic client authentication: how Bitbucket wants the consumer's id and secret. */
export function clientBasic(config: Pick<BitbucketCloudConfig, 'clientId' | 'clientSecret'>): string {
  return `Basic ${Buffer.from(`${config.clientId}:${config.clientSecret}`).toString('base64')}`;
}

/** The OAuth 2.0 endpoints of Bitbucket Cloud, on its web origin. */
export function oauthUrls(config: Pick<BitbucketCloudConfig, 'webUrl'>): {
  authorize: string;
  token: string;
} {
  return {
    authorize: `${config.webUrl}/site/oauth2/authorize`,
    token: `${config.webUrl}/site/oauth2/access_token`,
  };
}

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): v is string => typeof v === 'string';

/** A call's endpoint for the metrics: its path from /1.0 or /2.0 on, workspace slugs as `{workspace}`. */
export function endpointOf(url: string): string {
  const { pathname } = new URL(url);
  const path = /\/(?:1\.0|2\.0)\/.*$|\/site\/oauth2\/.*$/.exec(pathname)?.[0] ?? pathname;
  return path
    .replace(/^(\/2\.0\/user\/workspaces\/)[^/]+(\/permission)$/, '$1{workspace}$2')
    .replace(/^(\/1\.0\/groups\/)[^/]+$/, '$1{workspace}');
}

function garbage(what: string): SkyError {
  return new SkyError('upstream_error', `Bitbucket Cloud answered ${what} with something sky cannot read`);
}

export class BitbucketClient {
  /** Also read by fetchIdentity, so the connector logs through one logger. */
  readonly log: Logger | undefined;
  /** The optional calls' refusals and removed endpoints, remembered for an hour (SPEC §5.3). */
  readonly optional: OptionalCalls;

  /**
   * Told of every HTTP call: its endpoint (the path with slugs as `{workspace}`), status, seconds. The
   * strategy tells it of the code exchange, which passport-oauth2 makes.
   */
  readonly observe: ((endpoint: string, status: string, seconds: number) => void) | undefined;

  constructor(
    private readonly config: BitbucketCloudConfig,
    options: { log?: Logger; observe?: (endpoint: string, status: string, seconds: number) => void } = {},
  ) {
    this.log = options.log;
    this.observe = options.observe;
    this.optional = new OptionalCalls(options.log);
  }

  /** Refresh tokens rotate: the answer carries the one to use next time. */
  async refresh(refreshToken: string): Promise<UpstreamTokens> {
    const answer = await this.call(
      oauthUrls(this.config).token,
      {
        method: 'POST',
        headers: {
          authorization: clientBasic(this.config),
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
      },
      'the token request',
      false,
    );
    if (answer.status !== 200) throw tokenRefusal(answer.status, answer.body, 'upstream_revoked');
    return tokenAnswer(answer.body);
  }

  async user(accessToken: string): Promise<BitbucketUser> {
    const body = await this.get(`${this.config.apiUrl}/2.0/user`, accessToken, 'the user');
    if (!isObject(body) || !str(body['uuid']) || !str(body['account_id']) || !str(body['display_name']))
      throw garbage('the user');
    return {
      uuid: body['uuid'],
      account_id: body['account_id'],
      ...(str(body['username']) && body['username'] !== '' ? { username: body['username'] } : {}),
      nickname: str(body['nickname']) ? body['nickname'] : '',
      display_name: body['display_name'],
    };
  }

  async emails(accessToken: string): Promise<BitbucketEmail[]> {
    const values = await this.pages(
      `${this.config.apiUrl}/2.0/user/emails?pagelen=100`,
      accessToken,
      'the emails',
    );
    return values.filter(isObject).flatMap((v) =>
      str(v['email'])
        ? [
            {
              email: v['email'],
              is_primary: v['is_primary'] === true,
              is_confirmed: v['is_confirmed'] === true,
            },
          ]
        : [],
    );
  }

  async workspaces(accessToken: string): Promise<BitbucketWorkspaceAccess[]> {
    const values = await this.pages(
      `${this.config.apiUrl}/2.0/user/workspaces?pagelen=100`,
      accessToken,
      'the workspaces',
    );
    return values.filter(isObject).flatMap((v) => {
      const ws = v['workspace'];
      return isObject(ws) && str(ws['slug'])
        ? [
            {
              administrator: v['administrator'] === true,
              workspace: { slug: ws['slug'], uuid: str(ws['uuid']) ? ws['uuid'] : '' },
            },
          ]
        : [];
    });
  }

  async permission(accessToken: string, slug: string): Promise<WorkspacePermission> {
    const what = `the permission on ${slug}`;
    const body = await this.get(
      `${this.config.apiUrl}/2.0/user/workspaces/${encodeURIComponent(slug)}/permission`,
      accessToken,
      what,
    );
    const p = isObject(body) ? body['permission'] : undefined;
    if (p !== 'owner' && p !== 'create-project' && p !== 'member' && p !== 'collaborator')
      throw garbage(what);
    return p;
  }

  /** The 1.0 groups API: workspace admins only (403 otherwise); listed by Atlassian as removed (404/410). */
  async groups(accessToken: string, slug: string): Promise<BitbucketGroup[]> {
    const what = `the groups of ${slug}`;
    const body = await this.get(
      `${this.config.apiUrl}/1.0/groups/${encodeURIComponent(slug)}`,
      accessToken,
      what,
    );
    if (!Array.isArray(body)) throw garbage(what);
    return body.filter(isObject).flatMap((g) =>
      str(g['slug'])
        ? [
            {
              name: str(g['name']) ? g['name'] : g['slug'],
              slug: g['slug'],
              members: (Array.isArray(g['members']) ? g['members'] : [])
                .filter(isObject)
                .flatMap((m) =>
                  str(m['uuid'])
                    ? [{ uuid: m['uuid'], ...(str(m['account_id']) ? { account_id: m['account_id'] } : {}) }]
                    : [],
                ),
            },
          ]
        : [],
    );
  }

  /** Follows `next` exactly as given, but only on the API's own origin. */
  private async pages(first: string, accessToken: string, what: string): Promise<unknown[]> {
    const values: unknown[] = [];
    const origin = new URL(this.config.apiUrl).origin;
    let next: string | undefined = first;
    for (let page = 0; next !== undefined; page++) {
      if (page >= MAX_PAGES)
        throw new SkyError(
          'upstream_error',
          `Bitbucket Cloud returned more than ${MAX_PAGES} pages of ${what}`,
        );
      let url: URL;
      try {
        url = new URL(next);
      } catch {
        throw garbage(what);
      }
      if (url.origin !== origin)
        throw new SkyError('upstream_error', `Bitbucket Cloud sent a next page of ${what} on another host`);
      const body = await this.get(url.href, accessToken, what);
      if (!isObject(body) || !Array.isArray(body['values'])) throw garbage(what);
      values.push(...(body['values'] as unknown[]));
      next = str(body['next']) && body['next'] !== '' ? body['next'] : undefined;
    }
    return values;
  }

  private async get(url: string, accessToken: string, what: string): Promise<unknown> {
    const answer = await this.call(
      url,
      { method: 'GET', headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } },
      what,
      true,
    );
    if (answer.status === 401)
      throw new SkyError(
        'upstream_revoked',
        `Bitbucket Cloud refused the access token while reading ${what}`,
      );
    // Bitbucket's refusals have codes of their own: sky's `forbidden` page would blame the team config.
    if (answer.status === 403)
      throw new SkyError('upstream_forbidden', `Bitbucket Cloud does not let this user read ${what} (403)`);
    if (answer.status === 404 || answer.status === 410)
      throw new SkyError('upstream_gone', `Bitbucket Cloud does not know ${what} (${answer.status})`);
    if (answer.status >= 400 && answer.status < 500 && answer.status !== 429)
      throw new SkyError('upstream_forbidden', `Bitbucket Cloud refused to give ${what} (${answer.status})`);
    if (answer.status !== 200)
      throw new SkyError('upstream_error', `Bitbucket Cloud answered ${answer.status} for ${what}`);
    return answer.body;
  }

  /**
   * One call with a timeout, no redirects, a capped body and bounded retries on 429/5xx (honouring
   * Retry-After up to a cap). A POST is retried only when the server said so, never after a lost answer.
   */
  private async call(url: string, init: RequestInit, what: string, idempotent: boolean): Promise<Answer> {
    const { retries, timeoutMs } = this.config;
    for (let attempt = 0; ; attempt++) {
      let answer: Answer | null = null;
      let failure: SkyError;
      try {
        answer = await this.once(url, init, what, timeoutMs);
        if (answer.status !== 429 && answer.status < 500) return answer;
        failure =
          answer.status === 429
            ? new SkyError(
                'upstream_rate_limited',
                `Bitbucket Cloud is rate-limiting sky (429) while reading ${what}`,
              )
            : new SkyError('upstream_error', `Bitbucket Cloud answered ${answer.status} for ${what}`);
        if (!idempotent && answer.status !== 429 && answer.status !== 503) throw failure;
      } catch (err) {
        if (!(err instanceof SkyError)) throw err;
        failure = err;
        if (!idempotent || failure.code === 'upstream_error') throw failure;
      }
      if (attempt >= retries) throw failure;
      let delay = 100 * 2 ** attempt + Math.floor(Math.random() * 50);
      const asked = retryAfterMs(answer?.headers.get('retry-after') ?? null);
      if (asked !== undefined) {
        if (asked > MAX_RETRY_AFTER_MS) throw failure; // waiting that long would hang the login
        delay = Math.max(delay, asked);
      }
      this.log?.debug({ what, attempt, delay, error: failure.code }, 'retrying a Bitbucket call');
      await sleep(delay);
    }
  }

  private async once(url: string, init: RequestInit, what: string, timeoutMs: number): Promise<Answer> {
    const started = performance.now();
    let status = 'unreachable';
    try {
      const answer = await this.attempt(url, init, what, timeoutMs);
      status = String(answer.status);
      return answer;
    } catch (err) {
      if (err instanceof SkyError && err.code === 'upstream_timeout') status = 'timeout';
      else if (err instanceof SkyError && err.code !== 'upstream_unavailable') status = 'unreadable';
      throw err;
    } finally {
      this.observe?.(endpointOf(url), status, (performance.now() - started) / 1000);
    }
  }

  private async attempt(url: string, init: RequestInit, what: string, timeoutMs: number): Promise<Answer> {
    let res: Response;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      res = await fetch(url, { ...init, redirect: 'manual', signal });
    } catch (err) {
      if (signal.aborted)
        throw new SkyError(
          'upstream_timeout',
          `Bitbucket Cloud did not answer within ${timeoutMs} ms (${what})`,
          { cause: err },
        );
      throw new SkyError('upstream_unavailable', `Bitbucket Cloud cannot be reached (${what})`, {
        cause: err,
      });
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw new SkyError(
        'upstream_error',
        `Bitbucket Cloud redirected ${what} elsewhere (${res.status}); sky does not follow`,
      );
    }
    const text = await readCapped(res, signal, timeoutMs, what);
    if (res.status === 429 || res.status >= 500)
      return { status: res.status, headers: res.headers, body: null };
    const type = res.headers.get('content-type') ?? '';
    if (!/^application\/(.+\+)?json/i.test(type)) {
      if (res.status === 200) throw garbage(what);
      return { status: res.status, headers: res.headers, body: null };
    }
    try {
      return { status: res.status, headers: res.headers, body: JSON.parse(text) as unknown };
    } catch {
      if (res.status === 200) throw garbage(what);
      return { status: res.status, headers: res.headers, body: null };
    }
  }
}

/**
 * What a refused token request (any status but 200) means, for the refresh here and for the code
 * exchange in the strategy. The OAuth error code is a fixed word from RFC 6749, safe to show; the
 * description is not shown.
 */
export function tokenRefusal(
  status: number,
  body: unknown,
  onInvalidGrant: 'invalid_grant' | 'upstream_revoked',
): SkyError {
  const answer = isObject(body) ? body : {};
  if (status === 400 && answer['error'] === 'invalid_grant')
    return new SkyError(
      onInvalidGrant,
      'Bitbucket Cloud refused the grant (it was used, expired, or access was revoked)',
    );
  if (status === 401 || answer['error'] === 'invalid_client')
    return new SkyError(
      'upstream_error',
      'Bitbucket Cloud refused the OAuth consumer: check the client id and secret',
    );
  if (status === 429)
    return new SkyError(
      'upstream_rate_limited',
      'Bitbucket Cloud is rate-limiting sky (429) while reading the token request',
    );
  const code = str(answer['error']) && /^[a-z_]{1,40}$/.test(answer['error']) ? ` (${answer['error']})` : '';
  return new SkyError('upstream_error', `Bitbucket Cloud answered ${status}${code} to the token request`);
}

/** The tokens of a token request's 200 answer; anything else in its place is garbage (502). */
export function tokenAnswer(body: unknown): UpstreamTokens {
  const answer = isObject(body) ? body : {};
  const expiresIn = Number(answer['expires_in']);
  const scope = str(answer['scope']) ? answer['scope'] : str(answer['scopes']) ? answer['scopes'] : '';
  if (!str(answer['access_token']) || answer['access_token'] === '' || !Number.isFinite(expiresIn))
    throw garbage('the token request');
  return {
    accessToken: answer['access_token'],
    ...(str(answer['refresh_token']) && answer['refresh_token'] !== ''
      ? { refreshToken: answer['refresh_token'] }
      : {}),
    expiresAt: Date.now() + expiresIn * 1000,
    scopes: scope.split(/[\s,]+/).filter((s) => s !== ''),
  };
}

/** Retry-After in seconds or as an HTTP date (RFC 9110 §10.2.3); undefined when absent or unreadable. */
function retryAfterMs(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

async function readCapped(
  res: Response,
  signal: AbortSignal,
  timeoutMs: number,
  what: string,
): Promise<string> {
  if (!res.body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Uint8Array).byteLength;
      if (size > MAX_BODY_BYTES) {
        await res.body.cancel().catch(() => undefined);
        throw new SkyError(
          'upstream_error',
          `Bitbucket Cloud sent more than ${MAX_BODY_BYTES} bytes for ${what}`,
        );
      }
      chunks.push(Buffer.from(chunk as Uint8Array));
    }
  } catch (err) {
    if (err instanceof SkyError) throw err;
    if (signal.aborted)
      throw new SkyError(
        'upstream_timeout',
        `Bitbucket Cloud did not answer within ${timeoutMs} ms (${what})`,
        { cause: err },
      );
    throw new SkyError('upstream_unavailable', `Bitbucket Cloud dropped the connection (${what})`, {
      cause: err,
    });
  }
  return Buffer.concat(chunks).toString('utf8');
}
