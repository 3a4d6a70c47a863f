import { Agent } from 'undici';
import { SkyError, type SkyErrorCode } from '../errors';
import { AUTOMATION_PREFIX } from '../tokens/automation';
import { CliExit } from './io';
import { updateTargets, type Target } from './skyrc';

/** How long one HTTP call to the web node may take. */
const TIMEOUT_MS = 30_000;

/** Who a request goes to: the target's name (for messages) and how its TLS certificate is checked. */
export interface Peer {
  name: string;
  /** -k: no certificate check. */
  insecure?: boolean;
  /** --ca-cert: the PEM of the CA to trust (instead of the system's). */
  caCert?: string;
}

/** The peer of a saved target. */
export function peerOf(session: Session): Peer {
  const { insecure, ca_cert: caCert } = session.target;
  return { name: session.name, ...(insecure ? { insecure } : {}), ...(caCert ? { caCert } : {}) };
}

/** One undici Agent per TLS setting in use (the CLI talks to one node per run). */
const agents = new Map<string, Agent>();
function dispatcherOf(peer: Peer): Agent | undefined {
  if (!peer.insecure && !peer.caCert) return undefined;
  const key = `${peer.insecure ? 'k' : ''}:${peer.caCert ?? ''}`;
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({
      connect: peer.insecure ? { rejectUnauthorized: false } : { ca: peer.caCert ?? '' },
    });
    agents.set(key, agent);
  }
  return agent;
}

/** A target being worked on: its name, where it is saved, and its current tokens. */
export interface Session {
  name: string;
  file: string;
  target: Target;
}

/** Certificate failures that a private CA explains; the message says how to trust it. */
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** fly's message when the target does not answer at all. */
function unreachable(name: string, url: string, err: unknown): CliExit {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : '';
  const detail = typeof cause?.message === 'string' ? cause.message : (err as Error).message;
  const hint = TLS_CODES.has(code)
    ? '\nits TLS certificate is not trusted. for a private CA, log in with --ca-cert ca.pem (or -k to skip the check).\n'
    : '\nis the targeted CI server running? better go catch it lol\n';
  return new CliExit(`could not reach the CI server called ${name} at ${url}:\n\n    ${detail}\n${hint}`);
}

/** fetch with a timeout, and the network failures said in words (never a stack trace). */
export async function send(
  peer: Peer,
  url: string,
  init: RequestInit = {},
  timeoutMs = TIMEOUT_MS,
): Promise<Response> {
  const { name } = peer;
  const dispatcher = dispatcherOf(peer);
  try {
    return await fetch(url, {
      ...init,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
      ...(dispatcher ? { dispatcher } : {}),
    } as RequestInit);
  } catch (err) {
    if ((err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError') {
      throw new SkyError('upstream_timeout', `${url} did not answer within ${timeoutMs / 1000}s`, {
        cause: err,
      });
    }
    throw unreachable(name, url, err);
  }
}

/** How long `sky login` waits for a URL's /api/v1/info before it says nothing answers there. */
const PROBE_MS = 4_000;

/**
 * What fly does first: GET <url>/api/v1/info. A URL where no CI server answers fails here, in seconds,
 * before a login URL is printed; the answer's version is returned.
 */
export async function probeInfo(peer: Peer, api: string): Promise<string> {
  const url = `${api}/api/v1/info`;
  const res = await send(peer, url, { headers: { accept: 'application/json' } }, PROBE_MS);
  const body = (await res.json().catch(() => null)) as { version?: unknown } | null;
  if (!res.ok || typeof body?.version !== 'string') {
    throw new SkyError(
      'invalid_request',
      `${api} is not a CI server's web node: GET ${url} answered ${res.status}${res.ok ? ' without a version' : ''} (check the URL given with -c/--concourse-url)`,
    );
  }
  return body.version;
}

/** fly's hint when the token is missing, expired or revoked. */
export function notAuthorized(name: string, hadToken: boolean): CliExit {
  const headline = hadToken
    ? 'not authorized. run the following to log in again:'
    : 'not logged in. run the following to log in:';
  return new CliExit(`${headline}\n\n    sky -t ${name} login\n`);
}

const STATUS_CODES: Record<number, SkyErrorCode> = {
  400: 'invalid_request',
  401: 'not_authorized',
  403: 'forbidden',
  404: 'not_found',
  413: 'payload_too_large',
};

/** The server's own words for a failed call: `message` of sky's JSON errors, else the status line. */
export async function serverError(res: Response): Promise<SkyError> {
  const text = await res.text().catch(() => '');
  let message = `${res.status} ${res.statusText}`.trim();
  if ((res.headers.get('content-type') ?? '').includes('json')) {
    try {
      const body = JSON.parse(text) as Record<string, unknown>;
      const said = body['message'] ?? body['error_description'] ?? body['error'];
      if (typeof said === 'string' && said) message = said;
    } catch {
      // not JSON after all: the status line says enough
    }
  } else if (text.trim() && text.length <= 200 && !text.includes('<')) {
    message = text.trim();
  }
  const location = res.headers.get('location');
  if (res.status >= 300 && res.status < 400 && location) {
    // Redirects are not followed, so a bearer token never travels to another host.
    message = `the server redirected to ${location}: log in again with that URL (sky login -c)`;
  }
  const code = STATUS_CODES[res.status] ?? 'upstream_error';
  return new SkyError(code, message, { status: res.status });
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

function request(session: Session, path: string, token: string, init: RequestInit): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  headers.set('accept', 'application/json');
  return send(peerOf(session), session.target.api + path, { ...init, headers });
}

/**
 * Every authenticated call of every command goes through here: on a 401 it redeems the target's
 * refresh token once (POST /sky/token), saves the rotated tokens, and retries the request once.
 */
export async function callApi(session: Session, path: string, init: RequestInit = {}): Promise<Response> {
  const token = session.target.token?.value;
  if (!token) throw notAuthorized(session.name, false);
  const first = await request(session, path, token, init);
  if (first.status !== 401) return first;
  await discard(first);
  // An automation token has no refresh token and no person behind it: say which of the two it was.
  if (isAutomationToken(token)) throw automationRefusal(session, await probeAutomation(session));
  const renewed = await refresh(session);
  const second = await request(session, path, renewed, init);
  if (second.status !== 401) return second;
  await discard(second);
  throw notAuthorized(session.name, true);
}

/** Whether a saved token is a team's automation token (`sky login --token-file`), not a person's JWT. */
export const isAutomationToken = (token: string | undefined): boolean =>
  token?.startsWith(AUTOMATION_PREFIX) === true;

/**
 * GET /api/v1/teams/<the target's team> with the target's automation token (a viewer route, which
 * every role passes): 200 when the token is good for its team, 401 when the node refuses it (revoked,
 * expired, team deleted), 403 when it is another team's token.
 */
export async function probeAutomation(session: Session): Promise<number> {
  const token = session.target.token?.value ?? '';
  const res = await request(session, `/api/v1/teams/${encodeURIComponent(session.target.team)}`, token, {});
  await discard(res);
  return res.status;
}

/** What to tell a person whose automation-token target was refused, given probeAutomation's status. */
export function automationRefusal(session: Session, probed: number): CliExit {
  const { name } = session;
  const { team, api } = session.target;
  if (probed === 401) {
    return new CliExit(
      `the automation token of target '${name}' was refused: it was revoked or has expired, or team '${team}' was deleted. save a new one with:\n\n    sky -t ${name} login -n ${team} --token-file FILE\n`,
    );
  }
  if (probed === 403) {
    return new CliExit(
      `the automation token of target '${name}' is not a token of team '${team}'. log in with its team:\n\n    sky -t ${name} login -n TEAM --token-file FILE\n`,
    );
  }
  return new CliExit(
    `this target uses an automation token of team '${team}': it passes only the role routes of its team (such as sky -t ${name} get-team -n ${team}), and this command needs a person's login. log in as a person on another target:\n\n    sky -t (alias) login -c ${api}\n`,
  );
}

/** Redeems the refresh token (RFC 6749 §6); returns the new access token or throws fly's "log in again". */
async function refresh(session: Session): Promise<string> {
  const refreshToken = session.target.refresh_token;
  if (!refreshToken) throw notAuthorized(session.name, true);
  const res = await send(peerOf(session), `${session.target.api}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  const access = body['access_token'];
  if (res.ok && typeof access === 'string' && access) {
    const rotated = typeof body['refresh_token'] === 'string' ? body['refresh_token'] : undefined;
    await saveTokens(session, access, rotated ?? refreshToken);
    return access;
  }
  if (res.status >= 500) {
    const said = body['error_description'] ?? body['message'] ?? `${res.status} ${res.statusText}`;
    throw new SkyError(
      'upstream_error',
      `could not refresh the token: ${typeof said === 'string' ? said : JSON.stringify(said)}`,
      {
        status: res.status,
      },
    );
  }
  // A dead refresh token would fail the same way next time: forget it.
  if (body['error'] === 'invalid_grant') await saveTokens(session, session.target.token?.value, undefined);
  throw notAuthorized(session.name, true);
}

/** Writes the target's new tokens to the file (0600); other targets and keys stay as they are. */
async function saveTokens(session: Session, access: string | undefined, refreshToken: string | undefined) {
  const next: Target = { ...session.target };
  if (access === undefined) delete next.token;
  else next.token = { type: 'bearer', value: access };
  if (refreshToken === undefined) delete next.refresh_token;
  else next.refresh_token = refreshToken;
  session.target = next;
  await updateTargets(session.file, (targets) => {
    const stored = targets[session.name] ?? { api: next.api, team: next.team };
    delete stored.token;
    delete stored.refresh_token;
    targets[session.name] = { ...stored, ...next };
  });
}

/** The JSON body of a successful call, or the server's error. */
export async function expectJson<T>(res: Response): Promise<T> {
  if (!res.ok) throw await serverError(res);
  return (await res.json()) as T;
}
