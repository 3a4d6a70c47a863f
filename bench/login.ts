import { BitbucketClient } from '../lib/bitbucket/client';
import { SkyError } from '../lib/errors';
import type { FakeBitbucket } from '../lib/testing';
import { exchangeCode } from '../test/bitbucket/fake-login';
import { timed } from './stats';

/** What a client holds after a sky login. */
export interface SkyLogin {
  token: string;
  csrf: string;
  /** A Cookie header with skymarshal_auth and skymarshal_csrf, as a browser sends them. */
  cookie: string;
  /** The callback hop alone (code → identity → teams → token → cookies), in ms. */
  callbackMs: number;
  /** All three hops (login → authorize → callback), in ms. */
  totalMs: number;
}

/** name=value of every Set-Cookie, values as sent (still %-encoded). */
function setCookies(res: Response): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(';', 1)[0] ?? '';
    const eq = pair.indexOf('=');
    if (eq > 0) cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
  return cookies;
}

async function hop(url: string, cookie?: string): Promise<Response> {
  const res = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  await res.arrayBuffer(); // free the connection for the next request
  return res;
}

function redirected(res: Response, what: string): string {
  const location = res.headers.get('location');
  if (res.status !== 302 || !location) throw new Error(`${what}: expected a 302, got ${res.status}`);
  return location;
}

/**
 * The real browser login against a node: GET /sky/login → the fake's authorize (auto-consent as the
 * user the fake was told) → GET the callback with the sealed login-state cookie.
 */
export async function skyLogin(nodeUrl: string): Promise<SkyLogin> {
  const started = process.hrtime.bigint();
  const first = await hop(`${nodeUrl}/sky/login`);
  const authorize = redirected(first, 'GET /sky/login');
  const state = [...setCookies(first)].find(([name]) => name.startsWith('sky_login_'));
  if (!state) throw new Error('GET /sky/login set no sky_login_ cookie');
  const callbackUrl = redirected(await hop(authorize), 'the fake authorize');
  const { ms: callbackMs, value: last } = await timed(() => hop(callbackUrl, `${state[0]}=${state[1]}`));
  const landing = redirected(last, 'the callback');
  const totalMs = Number(process.hrtime.bigint() - started) / 1e6;
  const cookies = setCookies(last);
  const auth = cookies.get('skymarshal_auth');
  const csrf = cookies.get('skymarshal_csrf');
  if (!auth || !csrf) throw new Error('the callback set no skymarshal_auth/skymarshal_csrf');
  if (new URL(landing).searchParams.get('csrf_token') !== decodeURIComponent(csrf))
    throw new Error('the landing URL does not carry the csrf_token');
  return {
    token: decodeURIComponent(auth).slice('bearer '.length),
    csrf: decodeURIComponent(csrf),
    cookie: `skymarshal_auth=${auth}; skymarshal_csrf=${csrf}`,
    callbackMs,
    totalMs,
  };
}

export interface ConnectorSwitches {
  includeTeamGroups: boolean;
  getWorkspacePermissions: boolean;
}

export function clientFor(fake: FakeBitbucket, switches: ConnectorSwitches): BitbucketClient {
  return new BitbucketClient(fake.connectorConfig({ ...switches, timeoutMs: 10_000, retries: 0 }));
}

const DEX_CALLBACK = 'http://127.0.0.1:5556/dex/callback';

/**
 * The same Bitbucket calls in dex's order, one after another: token exchange, user, emails,
 * workspaces, then per workspace its groups and its permission. Returns the ms from the exchange on.
 */
export async function dexSequential(
  fake: FakeBitbucket,
  client: BitbucketClient,
  switches: ConnectorSwitches,
): Promise<number> {
  const authorize = new URL(`${fake.webUrl}/site/oauth2/authorize`);
  authorize.searchParams.set('client_id', fake.client.id);
  authorize.searchParams.set('response_type', 'code');
  authorize.searchParams.set('redirect_uri', DEX_CALLBACK);
  const code = new URL(redirected(await hop(authorize.href), 'the fake authorize')).searchParams.get('code');
  if (!code) throw new Error('the fake authorize gave no code');
  const { ms } = await timed(async () => {
    const tokens = await exchangeCode(fake, code, DEX_CALLBACK);
    await client.user(tokens.accessToken);
    await client.emails(tokens.accessToken);
    const workspaces = await client.workspaces(tokens.accessToken);
    for (const { workspace } of workspaces) {
      if (switches.includeTeamGroups) {
        await client.groups(tokens.accessToken, workspace.slug).catch((err: unknown) => {
          if (!(err instanceof SkyError && err.code === 'upstream_forbidden')) throw err;
        });
      }
      if (switches.getWorkspacePermissions) await client.permission(tokens.accessToken, workspace.slug);
    }
  });
  return ms;
}
