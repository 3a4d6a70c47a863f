import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import bcrypt from 'bcryptjs';
import type express from 'express';
import { requiresAuth } from '../../lib/http/guards';
import type { SkyRouterOptions } from '../../lib/http/router';
import { createLogger } from '../../lib/log';
import { FakeBitbucket } from '../../lib/testing';
import { Browser, type Hop } from '../harness/browser';
import { cliLoginParams } from '../harness/login';
import { recordFigures } from '../harness/figures';
import { startNode, type TestNode } from '../harness/node';

/**
 * STYLE "never a token, secret or Bitbucket credential" in the log: the main flows and the error paths
 * run with every log line captured at trace level, then the captured text is searched for every secret
 * the flows handed out or used. And the log is useful: one JSON object a line, with the request's id.
 */
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();

/** Everything the node wrote to its log, one chunk per line as pino writes them. */
const written: string[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    written.push(chunk.toString('utf8'));
    done();
  },
});

/** Secret value → what it is; only values long enough that a hit is no coincidence. */
const secrets = new Map<string, string>();
function secret(label: string, value: string | null | undefined): void {
  if (value && value.length >= 8 && !secrets.has(value)) secrets.set(value, label);
}
function jwt(label: string, token: string): void {
  secret(label, token);
  // The payload carries the CSRF claim and the refresh family id; the signature makes it a token.
  secret(`${label} (payload)`, token.split('.')[1]);
  secret(`${label} (signature)`, token.split('.')[2]);
}
function skyRefreshToken(label: string, token: string): void {
  secret(label, token);
  const [family, rest] = token.split('.');
  secret(`${label} (family part)`, family);
  secret(`${label} (secret part)`, rest);
}

/** The requests the test sent, with the id it gave each and the log lines written meanwhile. */
interface Sent {
  id: string;
  what: string;
  from: number;
  to: number;
}
const sent: Sent[] = [];
let seq = 0;

let fake: FakeBitbucket;
let node: TestNode;

/** This test's nodes: one signing key, the log captured at trace, Bitbucket given up on quickly. */
function tracedOptions(
  bitbucket: Partial<NonNullable<SkyRouterOptions['bitbucketCloud']>>,
): SkyRouterOptions {
  return {
    signingKey,
    logger: createLogger('trace', sink),
    rateLimit: { perMinute: 0 },
    bitbucketCloud: {
      clientId: fake.client.id,
      clientSecret: fake.client.secret,
      webUrl: fake.webUrl,
      apiUrl: fake.apiUrl,
      timeoutMs: 500,
      retries: 1,
      ...bitbucket,
    },
  };
}

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({
    fake,
    options: tracedOptions({ includeTeamGroups: true, getWorkspacePermissions: true }),
    routes: (app: express.Express) => {
      // A host route whose bug reaches the error handler's 5xx path with the caller's credentials around.
      app.get('/host/boom', requiresAuth(), () => {
        throw new Error('the host app failed');
      });
    },
  });
  await node.putTeam('builders', { member: { users: ['bob'] } });
  await node.putTeam('acme-team', { viewer: { groups: ['acme'] } });
  secret('the OAuth client secret', fake.client.secret);
  secret(
    'the HTTP Basic client credentials',
    Buffer.from(`${fake.client.id}:${fake.client.secret}`).toString('base64'),
  );
  const pemBody = signingKey.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
  secret('the signing key PEM body', pemBody.join(''));
  pemBody.forEach((line, i) => secret(`the signing key PEM, line ${i + 1}`, line));
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

/** Collects what a hop hands out: OAuth codes and states, CSRF tokens, cookies and the JWT in them. */
function collect(hop: Hop): void {
  if (hop.location) {
    const params = new URL(hop.location).searchParams;
    secret('an OAuth state', params.get('state'));
    secret('an OAuth authorization code', params.get('code'));
    secret('a CSRF token in a redirect', params.get('csrf_token'));
  }
  for (const line of hop.setCookies) {
    const [pair = ''] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (value === '') continue;
    const decoded = decodeURIComponent(value);
    secret(`the cookie ${name}`, value);
    secret(`the cookie ${name}, decoded`, decoded);
    if (name.startsWith('skymarshal_auth')) jwt(`the JWT of ${name}`, decoded.replace(/^bearer /i, ''));
    // express-session: s:<session id>.<signature>
    const session = /^s:([^.]+)\.(.+)$/.exec(decoded);
    if (session) {
      secret('a session id', session[1]);
      secret('a session cookie signature', session[2]);
    }
  }
  // The fly page after the click: the login code (sky CLI) or the token (fly) it hands the CLI.
  const handover = /<textarea id="handover"[^>]* data-kind="(code|token)">([^<]*)<\/textarea>/.exec(hop.body);
  if (handover?.[1] === 'code') secret('the login code of a CLI login', handover[2]);
  if (handover?.[1] === 'token') jwt('the JWT of a fly login', (handover[2] ?? '').replace(/^bearer /, ''));
  // The login state cookie's sealed content is a cookie value (above); the CSRF field of the forms:
  for (const m of hop.body.matchAll(/name="(csrf_token|nonce|code_challenge)" value="([^"]+)"/g)) {
    secret(`the ${m[1]} of a form`, m[2]);
  }
}

/** The upstream tokens of every fixture user so far (rotated ones vanish from the fake, so: often). */
function collectUpstream(): void {
  for (const user of ['alice', 'bob', 'carol'])
    for (const token of fake.tokensOf(user)) secret(`a Bitbucket token of ${user}`, token);
}

/** One request with an id of its own, so the log lines it causes can be told apart. */
async function send(
  browser: Browser,
  what: string,
  url: string,
  init: RequestInit = {},
  base = node.url,
): Promise<Hop> {
  const id = `logs-${++seq}`;
  const headers = new Headers(init.headers);
  const ours = url.startsWith(base);
  if (ours) headers.set('x-request-id', id);
  const from = written.length;
  const hop = await browser.request(url, { ...init, headers });
  // Let anything logged right after the answer land in this request's window.
  await new Promise((resolve) => setImmediate(resolve));
  if (ours) sent.push({ id, what, from, to: written.length });
  collect(hop);
  collectUpstream();
  return hop;
}

/** Follows redirects like a browser, every hop through send(). */
async function walk(browser: Browser, what: string, url: string, maxHops = 6): Promise<Hop[]> {
  const hops: Hop[] = [];
  let next: string | null = url;
  while (next && hops.length < maxHops) {
    const hop = await send(browser, what, next);
    hops.push(hop);
    next = hop.status >= 300 && hop.status < 400 ? hop.location : null;
  }
  return hops;
}

async function browserLogin(user: string): Promise<{ browser: Browser; csrf: string; token: string }> {
  fake.consentAs(user);
  const browser = new Browser();
  const hops = await walk(browser, `browser login of ${user}`, `${node.url}/sky/login`, 3);
  expect(hops.map((h) => h.status)).toEqual([302, 302, 302]);
  const csrf = new URL(hops[2]?.location ?? '').searchParams.get('csrf_token') ?? '';
  const token = decodeURIComponent(browser.jar.get('skymarshal_auth') ?? '').slice('bearer '.length);
  return { browser, csrf, token };
}

/** The sky CLI's login: the fly page, the click, the code redeemed with the verifier (all through send()). */
async function flyLogin(user: string): Promise<{ token: string; refreshToken: string }> {
  fake.consentAs(user);
  const browser = new Browser();
  const cli = cliLoginParams();
  secret('a PKCE verifier of the CLI', cli.verifier);
  secret('the nonce of the CLI', cli.nonce);
  const hops = await walk(browser, `fly login of ${user}`, `${node.url}/sky/login?${cli.query}`);
  const page = hops.at(-1);
  expect(page?.status).toBe(200);
  const fields = Object.fromEntries(
    [...(page?.body ?? '').matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [
      m[1] ?? '',
      m[2] ?? '',
    ]),
  );
  const clicked = await send(browser, `fly page clicked by ${user}`, `${node.url}/sky/fly`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  const code = /data-kind="code">([^<]*)</.exec(clicked.body)?.[1] ?? '';
  const redeemed = await send(new Browser(), `CLI login code of ${user} redeemed`, `${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      code_verifier: cli.verifier,
    }).toString(),
  });
  const body = JSON.parse(redeemed.body) as Record<string, string>;
  const token = body['access_token'] ?? '';
  const refreshToken = body['refresh_token'] ?? '';
  jwt('the JWT of a CLI login', token);
  skyRefreshToken('the refresh token of a CLI login', refreshToken);
  return { token, refreshToken };
}

async function refresh(
  what: string,
  refreshToken: string,
): Promise<{ status: number; body: Record<string, string> }> {
  const hop = await send(new Browser(), what, `${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
  const body = JSON.parse(hop.body) as Record<string, string>;
  if (body['access_token']) jwt('a refreshed JWT', body['access_token']);
  if (body['refresh_token']) skyRefreshToken('a rotated refresh token', body['refresh_token']);
  return { status: hop.status, body };
}

test('the main flows and the error paths log no secret, one JSON line per event with its request id', async () => {
  const anonymous = new Browser();

  // Browser login, landing, API calls (a 401 and a 403 among them).
  const alice = await browserLogin('alice');
  const landing = await send(alice.browser, 'landing', `${node.url}/`);
  expect(landing.status).toBe(200);
  const bearer = { authorization: `Bearer ${alice.token}` };
  expect((await send(anonymous, 'user info', `${node.url}/api/v1/user`, { headers: bearer })).status).toBe(
    200,
  );
  expect((await send(alice.browser, 'teams by cookie', `${node.url}/api/v1/teams`)).status).toBe(200);
  const forged = `${alice.token.slice(0, -8)}AAAAAAAA`;
  secret('a forged token presented', forged);
  const unauthorized = await send(anonymous, 'a forged token', `${node.url}/api/v1/user`, {
    headers: { authorization: `Bearer ${forged}` },
  });
  expect(unauthorized.status).toBe(401);
  const noCsrf = await send(anonymous, 'a cookie PUT without CSRF', `${node.url}/api/v1/teams/ops`, {
    method: 'PUT',
    headers: { cookie: alice.browser.cookieHeader(), 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { owner: { users: ['bitbucket-cloud:bob'] } } }),
  });
  expect(noCsrf.status).toBe(401);
  const bob = await browserLogin('bob');
  const forbidden = await send(anonymous, 'bob reads main', `${node.url}/api/v1/teams/main`, {
    headers: { authorization: `Bearer ${bob.token}` },
  });
  expect(forbidden.status).toBe(403);

  // Teams PUT and DELETE (cookie + CSRF, then bearer).
  const put = await send(alice.browser, 'team created', `${node.url}/api/v1/teams/ops`, {
    method: 'PUT',
    headers: { 'x-csrf-token': alice.csrf, 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { owner: { users: ['bitbucket-cloud:bob'] } } }),
  });
  expect(put.status).toBe(201);
  const del = await send(anonymous, 'team deleted', `${node.url}/api/v1/teams/ops`, {
    method: 'DELETE',
    headers: bearer,
  });
  expect(del.status).toBe(204);

  // CLI login, refresh (upstream refresh included), reuse of the rotated token.
  const cli = await flyLogin('alice');
  fake.expireAccessTokens();
  const refreshed = await refresh('refresh', cli.refreshToken);
  expect(refreshed.status).toBe(200);
  const reused = await refresh('refresh token reused', cli.refreshToken);
  expect(reused.body['error']).toBe('invalid_grant');

  // Logout (cookie + CSRF).
  const logout = await send(alice.browser, 'logout', `${node.url}/sky/logout`, {
    method: 'POST',
    headers: { 'x-csrf-token': alice.csrf, accept: 'application/json' },
  });
  expect(logout.status).toBe(204);

  // The user clicks Deny on Bitbucket's consent page.
  fake.deny();
  const denied = await walk(new Browser(), 'consent denied', `${node.url}/sky/login`, 3);
  expect(denied[2]?.status).toBe(403);

  // A browser whose token cookie is gone renews from its session (the sealed refresh token in it)…
  const renewing = await browserLogin('alice');
  renewing.browser.jar.delete('skymarshal_auth');
  const renewed = await send(renewing.browser, 'renewal from the session', `${node.url}/sky/login`);
  expect(new URL(renewed.location ?? '').searchParams.get('csrf_token')).toBeTruthy();
  // …and when Bitbucket refuses, falls back to a full login.
  const stale = await browserLogin('bob');
  stale.browser.jar.delete('skymarshal_auth');
  fake.revokeGrant('bob');
  collectUpstream();
  fake.expireAccessTokens();
  const fallback = await send(stale.browser, 'renewal refused upstream', `${node.url}/sky/login`);
  expect(fallback.location).toContain('/site/oauth2/authorize');

  // Upstream revocation: carol removes the app, then her CLI refreshes.
  const carol = await flyLogin('carol');
  fake.revokeGrant('carol');
  collectUpstream();
  fake.expireAccessTokens();
  const revoked = await refresh('refresh after upstream revocation', carol.refreshToken);
  expect(revoked.body['error']).toBe('invalid_grant');

  // Bitbucket faults on the token endpoint: a timeout and a 500, at login and at refresh; a retried 429.
  fake.addFault({ match: 'token', kind: 'hang' });
  fake.consentAs('alice');
  const timedOut = await walk(new Browser(), 'login, token endpoint hangs', `${node.url}/sky/login`, 3);
  expect(timedOut[2]?.status).toBe(504);
  fake.clearFaults();
  fake.addFault({ match: 'token', status: 500 });
  const failed = await walk(new Browser(), 'login, token endpoint 500', `${node.url}/sky/login`, 3);
  expect(failed[2]?.status).toBe(502);
  fake.clearFaults();
  const cli2 = await flyLogin('alice');
  fake.expireAccessTokens();
  fake.addFault({ match: 'token', kind: 'hang' });
  expect((await refresh('refresh, token endpoint hangs', cli2.refreshToken)).status).toBe(504);
  fake.clearFaults();
  fake.addFault({ match: 'api', status: 429, retryAfter: 0, times: 1 });
  await browserLogin('alice'); // one retry, logged at debug

  // Malformed requests: bad JSON, a bad team name, a token request that is not a form, a forged callback.
  const admin = await browserLogin('alice');
  const adminBearer = { authorization: `Bearer ${admin.token}` };
  const badJson = await send(anonymous, 'bad JSON', `${node.url}/api/v1/teams/ops`, {
    method: 'PUT',
    headers: { ...adminBearer, 'content-type': 'application/json' },
    body: `{"auth": ${admin.token}}`, // V8's message quotes the start of such a body
  });
  expect(badJson.status).toBe(400);
  const badName = await send(anonymous, 'bad team name', `${node.url}/api/v1/teams/Bad%20Name`, {
    method: 'PUT',
    headers: { ...adminBearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { owner: { users: ['bitbucket-cloud:bob'] } } }),
  });
  expect(badName.status).toBe(400);
  const notForm = await send(anonymous, 'token request as JSON', `${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: cli2.refreshToken }),
  });
  expect(notForm.status).toBe(400);
  // A real code and state, but from another browser's login: refused, and neither may be logged.
  fake.consentAs('alice');
  const victim = new Browser();
  const toBitbucket = await send(victim, 'a login that is never finished', `${node.url}/sky/login`);
  const stolen = await send(victim, 'its authorize', toBitbucket.location ?? '');
  const replayed = await send(anonymous, 'a callback from the wrong browser', stolen.location ?? '');
  expect(replayed.status).toBe(400);

  // Bitbucket's API unreachable (undici's "fetch failed", its cause a refused connection).
  const gone = await FakeBitbucket.start();
  const unreachable = await startNode({
    fake,
    options: tracedOptions({ apiUrl: gone.apiUrl }),
  });
  await gone.stop();
  try {
    fake.consentAs('alice');
    const hops: Hop[] = [];
    let next: string | null = `${unreachable.url}/sky/login`;
    const browser = new Browser();
    while (next && hops.length < 3) {
      const hop = await send(browser, 'login, API unreachable', next, {}, unreachable.url);
      hops.push(hop);
      next = hop.location;
    }
    expect(hops[2]?.status).toBe(503);
  } finally {
    await unreachable.close();
  }

  // Local users: the right password, wrong ones (a near miss, a long one), through the form and the
  // token endpoint, and the refresh of a password login. No password, hash or near miss is logged.
  const opsPassword = 'ops-password-9f3e-correct';
  const nearMiss = 'ops-password-9f3e-correcT';
  const hash = '$2a$04$0lLuJ8f0WbH4sS0sS0sS0uYl3v1m8G0nY0mZb2k0Qw0Ew1sQyqk1K';
  for (const [label, value] of [
    ['a local user password', opsPassword],
    ['a wrong password', nearMiss],
    ['a bcrypt hash from the config', hash],
  ] as const)
    secret(label, value);
  const locals = await startNode({
    fake,
    options: {
      ...tracedOptions({}),
      // Hashes: a plain password would add a start-up warning, a line of no request (covered in test/local).
      localUsers: [`ops:${bcrypt.hashSync(opsPassword, 4)}`, `dev:${hash}`],
      mainTeam: { users: ['alice'], localUsers: ['ops'] },
    },
  });
  try {
    const form = (username: string, password: string) =>
      send(
        new Browser(),
        'local user form',
        `${locals.url}/sky/login/local`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin: locals.url },
          body: new URLSearchParams({ username, password }).toString(),
        },
        locals.url,
      );
    const grant = (username: string, password: string) =>
      send(
        new Browser(),
        'password grant',
        `${locals.url}/sky/token`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: new URLSearchParams({ grant_type: 'password', username, password }).toString(),
        },
        locals.url,
      );
    expect((await form('ops', opsPassword)).status).toBe(302);
    expect((await form('ops', nearMiss)).status).toBe(401);
    expect((await form('dev', `${nearMiss}${'x'.repeat(2000)}`)).status).toBe(401);
    const granted = await grant('ops', opsPassword);
    expect(granted.status).toBe(200);
    const tokens = JSON.parse(granted.body) as { access_token: string; refresh_token: string };
    jwt('the JWT of a password login', tokens.access_token);
    skyRefreshToken('the refresh token of a password login', tokens.refresh_token);
    expect((await grant(nearMiss, nearMiss)).status).toBe(400);
  } finally {
    await locals.close();
  }

  // Automation tokens: created (the secret in that answer only), used, forged, revoked.
  const bots = await send(anonymous, 'a team for a bot', `${node.url}/api/v1/teams/bots`, {
    method: 'PUT',
    headers: { ...adminBearer, 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { owner: { users: ['bitbucket-cloud:bob'] } } }),
  });
  expect(bots.status).toBe(201);
  const made = await send(anonymous, 'automation token created', `${node.url}/api/v1/teams/bots/tokens`, {
    method: 'POST',
    headers: { ...adminBearer, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'deploy-bot', role: 'viewer' }),
  });
  expect(made.status).toBe(201);
  const botSecret = (JSON.parse(made.body) as { token: string }).token;
  secret('an automation token', botSecret);
  secret('an automation token (body)', botSecret.slice('sky_at_'.length));
  const botBearer = { authorization: `Bearer ${botSecret}` };
  const used = await send(anonymous, 'automation token used', `${node.url}/api/v1/teams/bots`, {
    headers: botBearer,
  });
  expect(used.status).toBe(200);
  const botForged = `${botSecret.slice(0, -1)}${botSecret.endsWith('a') ? 'b' : 'a'}`;
  secret('a forged automation token', botForged);
  const refusedBot = await send(anonymous, 'automation token forged', `${node.url}/api/v1/teams/bots`, {
    headers: { authorization: `Bearer ${botForged}` },
  });
  expect(refusedBot.status).toBe(401);
  const revokedBot = await send(
    anonymous,
    'automation token revoked',
    `${node.url}/api/v1/teams/bots/tokens/deploy-bot`,
    {
      method: 'DELETE',
      headers: adminBearer,
    },
  );
  expect(revokedBot.status).toBe(204);
  // The audit trail holds no secret either.
  const trail = await send(anonymous, 'the audit trail', `${node.url}/api/v1/audit?limit=1000`, {
    headers: adminBearer,
  });
  expect(trail.status).toBe(200);
  expect((JSON.parse(trail.body) as unknown[]).length).toBeGreaterThan(5);
  const inTrail = [...secrets].filter(([value]) => trail.body.includes(value));
  expect(inTrail.map(([, label]) => label)).toEqual([]);

  // The error handler's 5xx path, with a bearer and cookies on the request.
  const boom = await send(admin.browser, 'a host route fails', `${node.url}/host/boom`, {
    headers: { authorization: `Bearer ${admin.token}` },
  });
  expect(boom.status).toBe(500);

  collectUpstream();
  const text = written.join('');
  const found = [...secrets].filter(
    ([value]) => text.includes(value) || text.includes(encodeURIComponent(value)),
  );
  expect(found.map(([, label]) => label)).toEqual([]);
  expect(text).not.toContain('Unexpected token'); // the parser's message, which quotes the body

  // Useful: every line one JSON object with a level, a time and a message.
  const lines = text.split('\n').filter((l) => l !== '');
  expect(lines.length).toBe(written.length);
  const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const e of events) {
    expect(typeof e['level']).toBe('number');
    expect(typeof e['time']).toBe('number');
    expect(typeof e['msg']).toBe('string');
  }
  // Every line written while a request was in flight carries that request's id.
  const missing = sent.flatMap(({ id, what, from, to }) =>
    events
      .slice(from, to)
      .filter((e) => e['reqId'] !== id)
      .map((e) => `${what}: ${String(e['msg'])} (reqId ${String(e['reqId'])})`),
  );
  expect(missing).toEqual([]);
  // And in this test every event comes from a request: none without one of its ids.
  const ids = new Set(sent.map((r) => r.id));
  expect(events.filter((e) => !ids.has(String(e['reqId']))).map((e) => e['msg'])).toEqual([]);
  // What failed is named, not redacted: a 401 says why, the retry says why, the 5xx lines carry the cause.
  const reasonOf = (what: string): unknown =>
    events.find((e) => e['reqId'] === sent.find((r) => r.what === what)?.id)?.['reason'];
  expect(reasonOf('a forged token')).toBe('bad signature');
  expect(reasonOf('a cookie PUT without CSRF')).toBe('missing or wrong X-Csrf-Token');
  expect(events.find((e) => e['msg'] === 'retrying a Bitbucket call')?.['error']).toBe(
    'upstream_rate_limited',
  );
  const errors = events.filter((e) => e['level'] === 50);
  for (const e of errors) expect(e['err']).toEqual(expect.objectContaining({ message: expect.any(String) }));
  expect(errors.map((e) => e['error'])).toEqual([
    'upstream_timeout',
    'upstream_error',
    'upstream_timeout',
    'upstream_unavailable',
    'internal',
  ]);
  // The events a reader looks for are there.
  const messages = new Set(events.map((e) => e['msg']));
  for (const expected of [
    'token issued',
    'token refreshed',
    'logout',
    'team saved',
    'team deleted',
    'user revoked on every node',
    'retrying a Bitbucket call',
    'session refresh failed: full login',
    'a rotated refresh token was reused: its family is revoked',
  ])
    expect(messages).toContain(expected);

  recordFigures('Logs', {
    'log lines checked': lines.length,
    'requests made': sent.length,
    'secrets looked for': secrets.size,
    'secrets found': found.length,
  });
});
