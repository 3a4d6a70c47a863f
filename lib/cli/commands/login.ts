import { spawn } from 'node:child_process';
import { timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SkyError } from '../../errors';
import { validateTeamName } from '../../teams/auth';
import { AUTOMATION_PREFIX, wellFormed } from '../../tokens/automation';
import { challengeOf, confirmationCode, newNonce, newVerifier } from '../../tokens/pkce';
import { expectJson, probeInfo, send, serverError, type Peer } from '../client';
import { booleanOption, print, stringOption, type CommandSpec, type Context, type Values } from '../command';
import { loadTarget, updateTargets, type Target } from '../skyrc';

/**
 * What the browser (or the person at the keyboard) hands over: a login code to redeem, or a bare token.
 * A code from the page comes with `answer`, which tells the waiting page how the login ended.
 */
type Delivered = { code: string; answer?: (refusal: string | null) => void } | { token: string };

/** How long the page's request waits for the CLI's verdict before it is told the CLI has the code. */
const VERDICT_WAIT_MS = 6000;

/** The tokens a login ends with. */
interface Tokens {
  token: string;
  refreshToken?: string;
}

/** The part of GET /api/v1/user that login checks. */
interface UserInfo {
  is_admin?: boolean;
  teams?: Record<string, string[]>;
}

/** The web node's URL: http(s), no credentials, query or fragment; kept without a trailing slash. */
export function parseApiUrl(raw: string): string {
  const invalid = new SkyError(
    'invalid_request',
    `invalid URL '${raw}': give the web node's http(s) URL, e.g. https://ci.example.com`,
  );
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid;
  }
  if (!['http:', 'https:'].includes(url.protocol) || !url.hostname) throw invalid;
  if (url.username || url.password || url.search || url.hash) throw invalid;
  return url.href.replace(/\/+$/, '');
}

/**
 * How this login checks the node's TLS certificate, as fly: -k (none), --ca-cert FILE (a private CA),
 * else the saved target's setting (a URL given anew with neither starts from the system's CAs).
 */
function peerFor(name: string, values: Values, saved: Target | undefined): Peer {
  const insecure = booleanOption(values, 'insecure');
  const caFile = stringOption(values, 'ca-cert');
  if (insecure && caFile !== undefined) {
    throw new SkyError('invalid_request', '--insecure (-k) and --ca-cert exclude each other');
  }
  if (caFile !== undefined) {
    let pem: string;
    try {
      pem = readFileSync(caFile, 'utf8');
      new X509Certificate(pem);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new SkyError(
        'invalid_request',
        code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR'
          ? `could not read the CA certificate '${caFile}': ${code}`
          : `'${caFile}' is not a PEM certificate (--ca-cert takes the CA's certificate, e.g. ca.pem)`,
      );
    }
    return { name, caCert: pem };
  }
  if (insecure) return { name, insecure: true };
  return {
    name,
    ...(saved?.insecure ? { insecure: true } : {}),
    ...(saved?.ca_cert ? { caCert: saved.ca_cert } : {}),
  };
}

/** --port: the server refuses fly_port outside 1024–65535, so the CLI does too. */
function parsePort(raw: string | undefined): number {
  if (raw === undefined) return 0;
  const port = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(port >= 1024 && port <= 65535)) {
    throw new SkyError('invalid_request', `invalid --port '${raw}': use a port between 1024 and 65535`);
  }
  return port;
}

const TOKEN = /^[A-Za-z0-9._~+/=-]+$/;
/** An authorization code of sky's CLI login: 32 random bytes, base64url. */
const CODE = /^[A-Za-z0-9_-]{43}$/;

/** "bearer <jwt>" (any case) or the bare token; null for anything else. */
export function parseToken(raw: string): string | null {
  const parts = raw.trim().split(/\s+/);
  const value =
    parts.length === 1 ? parts[0] : parts.length === 2 && /^bearer$/i.test(parts[0] ?? '') ? parts[1] : '';
  return value && TOKEN.test(value) ? value : null;
}

interface Listener {
  port: number;
  received: Promise<Delivered>;
  close(): void;
}

const sameText = (a: string, b: string): boolean =>
  a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * The local end of the fly_port hand-off (RFC 8252 §7.3): 127.0.0.1 only, answers the page's request
 * (with Access-Control-Allow-Origin, so a cors-mode fetch works too) and resolves with the first login
 * code that carries this login's nonce. Anything else (a bare token, another nonce) is refused: a local
 * process cannot make this CLI save a login of its choosing. The page's request is answered once the CLI
 * has redeemed the code and checked the team (`answer`): 200 when the login is saved, 403 with the CLI's
 * reason when it is not, so the browser never says "logged in" while the terminal says otherwise.
 */
async function listen(api: string, port: number, nonce: string): Promise<Listener> {
  const origin = new URL(api).origin;
  let deliver: (delivered: Delivered) => void = () => undefined;
  const received = new Promise<Delivered>((resolve) => (deliver = resolve));
  const server = createServer((req, res) => {
    const headers = {
      'access-control-allow-origin': origin,
      'cache-control': 'no-store',
      'content-type': 'text/plain; charset=utf-8',
      connection: 'close',
    };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...headers, 'access-control-allow-methods': 'GET' }).end();
      return;
    }
    const query = new URL(req.url ?? '/', 'http://127.0.0.1').searchParams;
    const code = query.get('code') ?? '';
    const given = query.get('nonce') ?? '';
    if (req.method !== 'GET' || !CODE.test(code) || !sameText(given, nonce)) {
      res.writeHead(400, headers).end('refused: this sky login waits for its own login code and nonce\n');
      return;
    }
    let answered = false;
    const answer = (refusal: string | null): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      if (refusal === null)
        res.writeHead(200, headers).end('sky received your login: return to your terminal.\n');
      else res.writeHead(403, headers).end(`${refusal}\n`);
    };
    const timer = setTimeout(() => answer(null), VERDICT_WAIT_MS);
    deliver({ code, answer });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  } catch (err) {
    throw new SkyError(
      'invalid_request',
      `could not listen on 127.0.0.1:${port}: ${(err as Error).message} (choose another --port)`,
      { cause: err },
    );
  }
  return {
    port: (server.address() as AddressInfo).port,
    received,
    close() {
      server.close();
      server.closeIdleConnections();
      // A browser that connected and went quiet must not keep the CLI alive.
      setTimeout(() => server.closeAllConnections(), 1000).unref();
    },
  };
}

/** Lines pasted at the prompt until one is a login code or a token; never settles once stdin has ended. */
async function pasted(ctx: Context): Promise<Delivered> {
  for (;;) {
    // fly's prompt; the page's login code is what people paste here now, a token still works.
    const line = await ctx.prompter.ask('or enter token manually (input hidden): ', { hidden: true });
    if (line === null) return new Promise<never>(() => undefined);
    if (CODE.test(line.trim())) return { code: line.trim() };
    const token = parseToken(line);
    if (token) return { token };
    if (line.trim() !== '')
      print(
        ctx,
        "\ntoken must be of the format 'TYPE VALUE', e.g. 'Bearer ...' (or the page's login code)\n",
      );
    else print(ctx, '\n');
  }
}

/** POST /sky/token with one grant; `what` names it in the error ("the login code"). */
async function tokenGrant(
  peer: Peer,
  api: string,
  grant: Record<string, string>,
  what: string,
): Promise<Tokens> {
  const res = await send(peer, `${api}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(grant).toString(),
  });
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  const access = body['access_token'];
  if (!res.ok || typeof access !== 'string' || !access) {
    const said = body['error_description'] ?? body['error'] ?? `${res.status} ${res.statusText}`;
    throw new SkyError(
      'not_authorized',
      `${api} did not log you in with ${what}: ${typeof said === 'string' ? said : JSON.stringify(said)}`,
    );
  }
  const refreshToken = body['refresh_token'];
  return typeof refreshToken === 'string' && refreshToken
    ? { token: access, refreshToken }
    : { token: access };
}

/** Redeems the login code with this login's verifier (grant_type=authorization_code). */
const redeem = (peer: Peer, api: string, code: string, verifier: string): Promise<Tokens> =>
  tokenGrant(
    peer,
    api,
    { grant_type: 'authorization_code', code, code_verifier: verifier },
    'the login code',
  );

/** fly login -u -p: a local user's name and password (grant_type=password); asks for the password when -p is not given. */
async function passwordLogin(
  ctx: Context,
  peer: Peer,
  api: string,
  username: string,
  values: Values,
): Promise<Tokens> {
  let password = stringOption(values, 'password');
  if (password === undefined) {
    password = (await ctx.prompter.ask('password: ', { hidden: true })) ?? '';
    print(ctx, '\n');
  }
  ctx.prompter.close();
  return tokenGrant(peer, api, { grant_type: 'password', username, password }, 'the username and password');
}

/** -b: $BROWSER when set, else the platform's opener; failures are ignored, the URL is printed anyway. */
function openBrowser(env: Readonly<Record<string, string | undefined>>, url: string): void {
  const browser = env['BROWSER'];
  const [command, args]: [string, string[]] = browser
    ? [browser, [url]]
    : process.platform === 'darwin'
      ? ['open', [url]]
      : process.platform === 'win32'
        ? ['cmd', ['/c', 'start', '""', url]]
        : ['xdg-open', [url]];
  try {
    const child = spawn(command, args, { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // the URL is on the screen already
  }
}

/** fly login: the browser hands the token to a local port, or it is pasted; verified, then saved. */
async function login(ctx: Context, values: Values): Promise<void> {
  if (!ctx.target)
    throw new SkyError('invalid_request', 'name for the target must be specified (--target/-t)');
  const name = ctx.target;
  const givenUrl = stringOption(values, 'concourse-url');
  const saved = givenUrl === undefined ? await loadTarget(ctx.file, name) : undefined;
  // The saved URL is checked too: ~/.skyrc is a file people edit by hand.
  const api = parseApiUrl(givenUrl ?? saved?.api ?? '');
  const team = validateTeamName(stringOption(values, 'team-name') ?? saved?.team ?? 'main');
  const tokenFile = stringOption(values, 'token-file');
  if (tokenFile !== undefined) return automationLogin(ctx, values, { name, api, team, saved }, tokenFile);

  // Every flag is checked before anything is printed or opened.
  const port = parsePort(stringOption(values, 'port'));
  const username = stringOption(values, 'username');
  if (username === undefined && stringOption(values, 'password') !== undefined) {
    throw new SkyError('invalid_request', '--password needs --username (-u)');
  }
  const peer = peerFor(name, values, saved);
  await probeInfo(peer, api);
  print(ctx, `logging in to team '${team}'\n\n`);
  const check = (tokens: Tokens): Promise<void> => checkTeam(peer, api, team, tokens);
  const tokens =
    username === undefined
      ? await browserLogin(ctx, peer, api, values, port, check)
      : await passwordLogin(ctx, peer, api, username, values);
  if (username !== undefined) await check(tokens);
  await saveLogin(ctx, peer, api, team, tokens);
}

/** The browser login: the page hands a code to a local port (or it is pasted), redeemed with the verifier. */
async function browserLogin(
  ctx: Context,
  peer: Peer,
  api: string,
  values: Values,
  /** 0: any free port. */
  port: number,
  /** Throws when the login must not be saved (not in the team); its message goes to the page too. */
  check: (tokens: Tokens) => Promise<void>,
): Promise<Tokens> {
  const verifier = newVerifier();
  const challenge = challengeOf(verifier);
  const nonce = newNonce();
  const listener = await listen(api, port, nonce);
  try {
    const query = new URLSearchParams({
      fly_port: String(listener.port),
      code_challenge: challenge,
      code_challenge_method: 'S256',
      nonce,
    });
    const url = `${api}/login?${query.toString()}`;
    print(ctx, `navigate to the following URL in your browser:\n\n  ${url}\n\n`);
    print(ctx, `confirmation code: ${confirmationCode(challenge)} (the page must show the same)\n\n`);
    if (booleanOption(values, 'open-browser')) openBrowser(ctx.io.env, url);
    const delivered = await Promise.race([listener.received, pasted(ctx)]);
    ctx.prompter.close();
    print(ctx, '\n');
    if (!('code' in delivered)) {
      await check(delivered);
      return delivered;
    }
    try {
      const tokens = await redeem(peer, api, delivered.code, verifier);
      await check(tokens);
      delivered.answer?.(null);
      return tokens;
    } catch (err) {
      delivered.answer?.(`The CLI did not save this login: ${(err as Error).message}`);
      throw err;
    }
  } finally {
    // After the page has its answer: closing first would cut the request that waits for it.
    listener.close();
    ctx.prompter.close();
  }
}

/** Checks the token: it works, and its owner is in the team (or an admin). */
async function checkTeam(peer: Peer, api: string, team: string, tokens: Tokens): Promise<void> {
  const res = await send(peer, `${api}/api/v1/user`, {
    headers: { authorization: `Bearer ${tokens.token}`, accept: 'application/json' },
  });
  if (res.status === 401) {
    await res.body?.cancel();
    throw new SkyError(
      'not_authorized',
      `${api} did not accept the token: it is invalid, expired or revoked`,
    );
  }
  const user = await expectJson<UserInfo>(res);
  if (!user.is_admin && !Object.hasOwn(user.teams ?? {}, team)) {
    throw new SkyError('forbidden', `you are not a member of '${team}' or the team does not exist`);
  }
}

/**
 * The secret of a --token-file: the file's text, trimmed, which must be one automation token. The
 * message names the file and never shows what is in it (it may be some other secret).
 */
function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new SkyError('invalid_request', `could not read the token file '${file}': ${code}`);
  }
  const secret = text.trim();
  if (!secret.startsWith(AUTOMATION_PREFIX)) {
    throw new SkyError(
      'invalid_request',
      `'${file}' does not hold an automation token: --token-file takes a file with only the ${AUTOMATION_PREFIX}… secret that sky create-token printed`,
    );
  }
  if (!wellFormed(secret)) {
    throw new SkyError(
      'invalid_request',
      `the automation token in '${file}' is damaged (wrong length or checksum): copy the secret sky create-token printed again`,
    );
  }
  return secret;
}

/**
 * sky login --token-file: a team's automation token instead of a person. It is checked on the team's
 * viewer route (GET /api/v1/teams/TEAM: every role passes it, and only for its own team), then saved
 * as fly saves a token: type bearer, no refresh token (an automation token is never refreshed).
 */
async function automationLogin(
  ctx: Context,
  values: Values,
  { name, api, team, saved }: { name: string; api: string; team: string; saved: Target | undefined },
  file: string,
): Promise<void> {
  if (stringOption(values, 'username') !== undefined || stringOption(values, 'password') !== undefined) {
    throw new SkyError(
      'invalid_request',
      '--token-file cannot be combined with --username (-u) or --password (-p): the automation token is the whole login',
    );
  }
  if (booleanOption(values, 'open-browser') || stringOption(values, 'port') !== undefined) {
    throw new SkyError(
      'invalid_request',
      '--token-file needs no browser: drop --open-browser (-b) and --port',
    );
  }
  const secret = readTokenFile(file);
  const peer = peerFor(name, values, saved);
  await probeInfo(peer, api);
  print(ctx, `logging in to team '${team}' with the automation token in '${file}'\n\n`);
  const res = await send(peer, `${api}/api/v1/teams/${encodeURIComponent(team)}`, {
    headers: { authorization: `Bearer ${secret}`, accept: 'application/json' },
  });
  if (res.status === 401 || res.status === 403) await res.body?.cancel();
  if (!res.ok) {
    if (res.status === 401) {
      throw new SkyError(
        'not_authorized',
        `${api} did not accept the automation token in '${file}': it is unknown, revoked or expired, or its team was deleted`,
      );
    }
    if (res.status === 403) {
      const hint = stringOption(values, 'team-name') === undefined ? ' (it was not given with -n)' : '';
      throw new SkyError(
        'forbidden',
        `the automation token in '${file}' is not a token of team '${team}'${hint}: give the token's team with -n TEAM`,
      );
    }
    throw await serverError(res);
  }
  await res.body?.cancel();
  await saveLogin(ctx, peer, api, team, { token: secret });
}

/** Saves the checked login as the target. */
async function saveLogin(ctx: Context, peer: Peer, api: string, team: string, tokens: Tokens): Promise<void> {
  await updateTargets(ctx.file, (targets) => {
    const previous = targets[peer.name];
    const kept = { ...previous };
    // A pasted token starts a session without a refresh token; an old one belongs to another session.
    delete kept.token;
    delete kept.refresh_token;
    delete kept.insecure;
    delete kept.ca_cert;
    targets[peer.name] = {
      ...kept,
      api,
      team,
      ...(peer.insecure ? { insecure: true } : {}),
      ...(peer.caCert ? { ca_cert: peer.caCert } : {}),
      token: { type: 'bearer', value: tokens.token },
      ...(tokens.refreshToken ? { refresh_token: tokens.refreshToken } : {}),
    };
  });
  print(ctx, 'target saved\n');
}

export const loginCommand: CommandSpec = {
  name: 'login',
  aliases: ['l'],
  summary: 'Authenticate with the target',
  options: {
    'concourse-url': {
      type: 'string',
      short: 'c',
      value: 'URL',
      description: "URL of the CI web node (default: the target's saved URL)",
    },
    'team-name': {
      type: 'string',
      short: 'n',
      value: 'TEAM',
      description: "Team to log in to (default: the target's saved team, else main)",
    },
    insecure: {
      type: 'boolean',
      short: 'k',
      description: "Skip verification of the web node's TLS certificate (saved with the target)",
    },
    'ca-cert': {
      type: 'string',
      value: 'FILE',
      description: "PEM of the CA that signed the web node's certificate (saved with the target)",
    },
    'open-browser': {
      type: 'boolean',
      short: 'b',
      description: 'Open the login URL in a browser ($BROWSER, else the system default)',
    },
    username: {
      type: 'string',
      short: 'u',
      value: 'NAME',
      description: 'Log in as this local user (no browser; asks for the password unless -p is given)',
    },
    password: {
      type: 'string',
      short: 'p',
      value: 'PASSWORD',
      description: "The local user's password (visible in the process list: prefer the prompt)",
    },
    port: {
      type: 'string',
      value: 'PORT',
      description: 'Local port (1024-65535) that receives the token (default: any free port)',
    },
    'token-file': {
      type: 'string',
      value: 'FILE',
      description:
        "Log in with a team's automation token (sky_at_…, from sky create-token) read from FILE; give its team with -n",
    },
  },
  run: login,
};
