import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SkyError } from '../../errors';
import { validateTeamName } from '../../teams/auth';
import { expectJson, send } from '../client';
import { booleanOption, print, stringOption, type CommandSpec, type Context, type Values } from '../command';
import { loadTarget, updateTargets } from '../skyrc';

/** What the browser (or the person at the keyboard) hands over. */
interface Delivered {
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

/**
 * The local end of the fly_port hand-off: 127.0.0.1 only, answers the success page's request (with
 * Access-Control-Allow-Origin, so a cors-mode fetch works too) and resolves with the first token.
 */
async function listen(api: string, port: number): Promise<Listener> {
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
    const token = parseToken(query.get('token') ?? '');
    if (req.method !== 'GET' || !token) {
      res.writeHead(400, headers).end('sky is waiting for ?token=bearer%20<token>\n');
      return;
    }
    res.writeHead(200, headers).end('sky received your token: return to your terminal.\n');
    const refreshToken = query.get('refresh_token');
    deliver(refreshToken ? { token, refreshToken } : { token });
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

/** Lines pasted at the prompt until one is a token; never settles once stdin has ended. */
async function pasted(ctx: Context): Promise<Delivered> {
  for (;;) {
    const line = await ctx.prompter.ask('or enter token manually (input hidden): ', { hidden: true });
    if (line === null) return new Promise<never>(() => undefined);
    const token = parseToken(line);
    if (token) return { token };
    if (line.trim() !== '') print(ctx, "\ntoken must be of the format 'TYPE VALUE', e.g. 'Bearer ...'\n");
    else print(ctx, '\n');
  }
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
  const port = parsePort(stringOption(values, 'port'));

  print(ctx, `logging in to team '${team}'\n\n`);
  const listener = await listen(api, port);
  let delivered: Delivered;
  try {
    const url = `${api}/login?fly_port=${listener.port}`;
    print(ctx, `navigate to the following URL in your browser:\n\n  ${url}\n\n`);
    if (booleanOption(values, 'open-browser')) openBrowser(ctx.io.env, url);
    delivered = await Promise.race([listener.received, pasted(ctx)]);
  } finally {
    listener.close();
    ctx.prompter.close();
  }
  print(ctx, '\n');

  const res = await send(name, `${api}/api/v1/user`, {
    headers: { authorization: `Bearer ${delivered.token}`, accept: 'application/json' },
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

  await updateTargets(ctx.file, (targets) => {
    const previous = targets[name];
    const kept = { ...previous };
    // A pasted token starts a session without a refresh token; an old one belongs to another session.
    delete kept.token;
    delete kept.refresh_token;
    targets[name] = {
      ...kept,
      api,
      team,
      token: { type: 'bearer', value: delivered.token },
      ...(delivered.refreshToken ? { refresh_token: delivered.refreshToken } : {}),
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
    'open-browser': {
      type: 'boolean',
      short: 'b',
      description: 'Open the login URL in a browser ($BROWSER, else the system default)',
    },
    port: {
      type: 'string',
      value: 'PORT',
      description: 'Local port (1024-65535) that receives the token (default: any free port)',
    },
  },
  run: login,
};
