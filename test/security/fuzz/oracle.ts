import { confirmationCode } from '../../../lib/tokens/pkce';
import { headerOf, type Answer } from '../raw-http';
import { Arena, claimsOf, type Name, NAMES } from './arena';
import { type LiveState } from './plans';
import { OAUTH_ERRORS, RATE_LIMITED, type Sent, SERVES } from './materialise';

// ---------------------------------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------------------------------

const PROTOTYPE_KEYS = Object.getOwnPropertyNames(Object.prototype).sort().join();

export function jsonOf(a: Answer): unknown {
  try {
    return JSON.parse(a.body);
  } catch {
    return undefined;
  }
}

/** One of sky's own pages (pages.ts): its doctype, and a CSP with a per-response nonce. */
const isPage = (a: Answer): boolean =>
  (headerOf(a, 'content-type') ?? '').startsWith('text/html') &&
  a.body.startsWith('<!doctype html><html lang="en">') &&
  /default-src 'none'.*script-src 'nonce-/.test(headerOf(a, 'content-security-policy') ?? '');

/** Express's own 404 for a path or method no route takes: finalhandler's page, its bare CSP (also on HEAD). */
const isUnmatched = (a: Answer, method: string): boolean =>
  a.status === 404 &&
  headerOf(a, 'content-security-policy') === "default-src 'none'" &&
  (method === 'HEAD' || a.body.includes('<pre>Cannot '));

export function isApiError(a: Answer): boolean {
  const body = jsonOf(a);
  return (
    (headerOf(a, 'content-type') ?? '').startsWith('application/json') &&
    typeof body === 'object' &&
    body !== null &&
    Object.keys(body).sort().join() === 'error,message' &&
    typeof (body as Record<string, unknown>)['error'] === 'string' &&
    typeof (body as Record<string, unknown>)['message'] === 'string'
  );
}

export function isOAuthError(a: Answer): boolean {
  const body = jsonOf(a) as Record<string, unknown> | undefined;
  return (
    typeof body === 'object' &&
    body !== null &&
    Object.keys(body).sort().join() === 'error,error_description' &&
    OAUTH_ERRORS.has(String(body['error'])) &&
    typeof body['error_description'] === 'string'
  );
}

/** Parameters as Express parses a query or a form: a string when given once, a list when repeated. */
type Params = Record<string, string | string[] | undefined>;
const formParams = (form: Map<string, string[]> | null): Params =>
  Object.fromEntries([...(form ?? [])].map(([k, v]) => [k, v.length === 1 ? v[0] : v]));

/** The spec of issue #13, written out again: 43 base64url characters for S256, 16–64 for the nonce. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const CLI_NONCE = /^[A-Za-z0-9_-]{16,64}$/;

interface CliVerdict {
  valid: boolean;
  port?: number;
  cli?: { challenge: string; nonce: string };
}

/**
 * What a CLI login's parameters are worth (GET /sky/login's query, POST /sky/fly's form): fly_port an
 * integer 1024–65535; code_challenge and nonce both or neither, only with fly_port; the method S256.
 */
function cliVerdict(p: Params, portRequired: boolean): CliVerdict {
  const invalid = { valid: false };
  const raw = p['fly_port'];
  let port: number | undefined;
  if (raw !== undefined) {
    const n = typeof raw === 'string' && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= 1024 && n <= 65535)) return invalid;
    port = n;
  } else if (portRequired) return invalid;
  const { code_challenge: challenge, code_challenge_method: method, nonce } = p;
  if (challenge === undefined && method === undefined && nonce === undefined) {
    return port === undefined ? { valid: true } : { valid: true, port };
  }
  if (port === undefined || (method !== undefined && method !== 'S256')) return invalid;
  if (typeof challenge !== 'string' || !S256_CHALLENGE.test(challenge)) return invalid;
  if (typeof nonce !== 'string' || !CLI_NONCE.test(nonce)) return invalid;
  return { valid: true, port, cli: { challenge, nonce } };
}

/** What a fly page hands the CLI: a code or a bare token, or null. */
export function deliveryOf(body: string): { kind: 'code' | 'token'; value: string } | null {
  const m = /<textarea id="handover"[^>]* data-kind="(code|token)">([^<]*)<\/textarea>/.exec(body);
  return m ? { kind: m[1] as 'code' | 'token', value: m[2] ?? '' } : null;
}

/**
 * The one grant a token request may get: a live refresh token under grant_type=refresh_token, or a live
 * code with its own verifier under authorization_code (each parameter once). Null: nothing is due.
 */
export function grantOf(s: Sent): { kind: 'refresh' | 'code'; who: Name; code?: string } | null {
  const one = (name: string): string | undefined => {
    const values = s.form?.get(name);
    return values?.length === 1 && values[0] !== '' ? values[0] : undefined;
  };
  const type = one('grant_type');
  if (type === 'refresh_token') {
    const r = s.refresh.find((x) => x.state === 'live' && x.token === one('refresh_token'));
    return r ? { kind: 'refresh', who: r.who } : null;
  }
  if (type === 'authorization_code') {
    const c = s.codes.find(
      (x) => x.state === 'live' && x.code === one('code') && x.verifier === one('code_verifier'),
    );
    return c ? { kind: 'code', who: c.who, code: c.code } : null;
  }
  return null;
}

/** What a callback must answer for each kind of pending login (with a code and the state), and say. */
const CALLBACK_SAYS: Record<Exclude<LiveState, 'none'>, string | null> = {
  // Past the state: Bitbucket refuses the fuzz's code.
  live: null,
  tampered:
    'This login was already finished, or it was started in another browser. Start the login again in this browser.',
  'no-cookie':
    'This login was already finished, or it was started in another browser. Start the login again in this browser.',
  'cookie-tampered':
    'This login cannot be read: it was started in another browser, or before the CI server changed its key. Start the login again.',
  foreign:
    'This login cannot be read: it was started in another browser, or before the CI server changed its key. Start the login again.',
  swapped:
    'This login cannot be read: it was started in another browser, or before the CI server changed its key. Start the login again.',
  expired: 'This login was started more than 10 minutes ago. Start it again.',
  replayed: 'This login was already finished once. Start the login again if you need to.',
};

const EPOCH = 'Expires=Thu, 01 Jan 1970 00:00:00 GMT';

/** Everything wrong with one answer; empty when it is one sky may give. Grants are judged on `arena`'s state. */
export function problemsOf(arena: Arena, s: Sent, a: Answer): string[] {
  const problems: string[] = [];
  const { status } = a;
  const method = s.plan.method;
  const body = method === 'HEAD' ? '' : a.body;

  // The fly click writes its code to the store: a store outage there is a 503, nothing else is a 5xx.
  if (status >= 500 && !(status === 503 && s.kind === 'fly')) problems.push(`unexpected ${status}`);
  if (status === 503 && !headerOf(a, 'retry-after')) problems.push('503 without Retry-After');
  if (Object.getOwnPropertyNames(Object.prototype).sort().join() !== PROTOTYPE_KEYS) {
    problems.push('Object.prototype was polluted');
  }
  if ((headerOf(a, 'content-type') ?? '').startsWith('text/html')) {
    for (const r of s.reflected)
      if (body.includes(r)) problems.push(`HTML repeats ${JSON.stringify(r.slice(0, 60))} unescaped`);
    // No page repeats a credential the request carried (a fly page hands over a new one).
    for (const secret of s.secrets)
      if (secret.length >= 16 && body.includes(secret))
        problems.push('a page shows a credential of the request');
  }
  if (status >= 400) {
    for (const secret of s.secrets) {
      if (secret.length >= 16 && body.includes(secret))
        problems.push('an error body repeats a credential of the request');
    }
  }
  if (status === 429 && !RATE_LIMITED.has(s.kind)) problems.push('429 outside the rate-limited routes');

  // Node's own refusals (bad request line or header, header block too large, Expect) come before sky.
  // Express itself answers what it never routes (a request target like `//host`): a plain 404. A host
  // route's own answer carries no request id (sky stamps only what it answers: its routes and refusals).
  const hostAnswer =
    status < 400 && (s.kind.startsWith('host') || s.kind === 'other' || method === 'OPTIONS');
  if (!a.headers.has('x-request-id') && !isUnmatched(a, method) && !hostAnswer) {
    if (![400, 417, 431].includes(status)) problems.push(`${status} without a request id`);
    return problems;
  }
  const served = SERVES[s.kind].includes(method);
  if (isUnmatched(a, method)) {
    if (served && (arena.hostRoutes || !s.kind.startsWith('host')))
      problems.push(`${method} ${s.kind} fell through to Express's 404`);
    return problems;
  }
  if (method === 'OPTIONS' && status < 300) {
    if (!/^[A-Z, ]*$/.test(body)) problems.push(`OPTIONS answered a body: ${body.slice(0, 80)}`);
    return problems;
  }

  // Error shapes (SPEC §4, README "Routes").
  if (status >= 400 && method !== 'HEAD') {
    const kind = s.kind;
    const shape =
      kind === 'token'
        ? isOAuthError(a)
        : kind === 'user' || kind === 'teams' || kind === 'team' || kind === 'keys'
          ? isApiError(a)
          : kind === 'login' || kind === 'callback' || kind === 'legacy' || kind === 'fly'
            ? isPage(a)
            : isApiError(a) || isPage(a);
    if (!shape)
      problems.push(
        `${status} ${kind} error of the wrong shape: ${headerOf(a, 'content-type')} ${body.slice(0, 160)}`,
      );
    if (kind === 'token' && headerOf(a, 'cache-control') !== 'no-store')
      problems.push('token error without no-store');
  }

  // Grants.
  const who = new Set(s.placed.map((p) => p.who));
  const alice = who.has('alice');
  // builders is put back after every change, so bob owns it and carol views it whenever a request comes.
  const builders = s.team === 'builders';
  const csrfOk =
    s.placed.some((p) => p.via === 'bearer') ||
    s.placed.some((p) => p.via === 'cookie' && s.csrfValues.some((v) => v === p.csrf));
  const ok = status >= 200 && status < 300;
  const wrong = (what: string): void => {
    problems.push(`WRONG GRANT: ${what} (placed: ${[...who].join(',') || 'nobody'}, status ${status})`);
  };
  const set = a.headers.get('set-cookie') ?? [];
  const issued = set.filter((c) => /^skymarshal_auth\d*=[^;]/.test(c));
  if (
    issued.length > 0 &&
    !(s.kind === 'login' && (s.placed.some((p) => p.via === 'cookie') || s.sessions.length > 0))
  ) {
    wrong('auth cookies issued outside a renewing /sky/login');
  }
  // A pending login's cookie: set by /sky/login only (sealed, HttpOnly, on /sky), cleared elsewhere.
  for (const c of set.filter((line) => line.startsWith('sky_login_'))) {
    const cleared = /^[^=]+=;/.test(c) && c.includes(EPOCH);
    if (!cleared && s.kind !== 'login') problems.push(`${s.kind} set a login cookie`);
    if (!/^sky_login_[A-Za-z0-9_-]{16}=/.test(c) || !c.includes('; Path=/sky;') || !c.includes('; HttpOnly'))
      problems.push(`a login cookie of the wrong name or attributes: ${c.slice(0, 60)}`);
  }
  const getLike = method === 'GET' || method === 'HEAD';
  // Whatever the route: a page greeting someone, or JSON naming their subject, is for a person whose token came.
  for (const n of NAMES) {
    const shown =
      body.includes(`Hello, ${arena.people[n].displayName}`) ||
      body.includes(`"sub":${JSON.stringify(arena.people[n].sub)}`);
    if (ok && shown && !who.has(n)) wrong(`${s.kind} answered with ${n}'s identity`);
  }
  switch (s.kind) {
    case 'user':
      if (ok && getLike) {
        if (who.size === 0) wrong('/api/v1/user without a valid token');
        const user = jsonOf(a) as { sub?: unknown; is_admin?: unknown } | undefined;
        if (method === 'GET' && user) {
          const owner = NAMES.find((n) => arena.people[n].sub === user.sub);
          if (!owner || !who.has(owner)) wrong(`/api/v1/user answered for ${String(user.sub)}`);
          if (user.is_admin !== (owner === 'alice'))
            wrong(`is_admin ${String(user.is_admin)} for ${owner ?? '?'}`);
        }
      }
      break;
    case 'teams':
      if (ok && getLike) {
        if (who.size === 0) wrong('/api/v1/teams without a valid token');
        const list = jsonOf(a);
        if (method === 'GET' && !alice && Array.isArray(list)) {
          const names = list.map((t: { name?: unknown }) => t.name);
          const allowed = who.has('bob') || who.has('carol') ? ['builders'] : [];
          if (names.some((n) => !allowed.includes(String(n))))
            wrong(`teams listed to a non-admin: ${names.join(',')}`);
        }
      }
      break;
    case 'team':
    case 'host-team':
      if (ok && getLike && !(alice || (builders && (who.has('bob') || who.has('carol'))))) {
        wrong(`${s.kind} ${s.team ?? '?'} read`);
      }
      if (ok && (method === 'PUT' || method === 'POST')) {
        if (!csrfOk) wrong(`${method} ${s.team ?? '?'} by cookie without the CSRF token`);
        const owner = alice || (status === 200 && builders && who.has('bob'));
        if (!owner) wrong(`${method} ${s.team ?? '?'} changed by a non-owner`);
        if (status === 201 && !alice) wrong(`team ${s.team ?? '?'} created by a non-admin`);
      }
      if (ok && method === 'DELETE' && !(alice && csrfOk))
        wrong(`team ${s.team ?? '?'} deleted by a non-admin`);
      break;
    case 'host-admin':
      if (ok && !alice) wrong('admin route passed');
      break;
    case 'logout':
      if ((ok || status === 303) && (who.size === 0 || (!getLike && !csrfOk)))
        wrong('logout without a valid token and CSRF');
      // Without a Bearer header a GET (any link on any site) only asks: a page with a POST form.
      if (getLike && !s.plan.auth && (status === 204 || status === 303))
        wrong(`a cookie-only ${method} /sky/logout logged out`);
      if (status === 200 && method === 'GET') {
        const form = `<form method="post" action="${arena.url}/sky/logout"`;
        if (!body.includes(form)) problems.push('the logout page has no POST form');
        if (!s.placed.some((p) => body.includes(`name="csrf_token" value="${p.csrf}"`)))
          problems.push('the logout page lacks the CSRF field of the token that asked');
      }
      break;
    case 'token': {
      const grant = grantOf(s);
      if (ok && !grant) wrong('a token for no live refresh token, nor a live code with its own verifier');
      if (ok) {
        const granted = jsonOf(a) as Record<string, unknown> | undefined;
        if (
          granted?.['token_type'] !== 'bearer' ||
          typeof granted['access_token'] !== 'string' ||
          typeof granted['refresh_token'] !== 'string'
        ) {
          problems.push(`token answer of the wrong shape: ${body.slice(0, 100)}`);
        } else if (grant && claimsOf(granted['access_token'])['sub'] !== arena.people[grant.who].sub) {
          wrong(`a ${grant.kind} grant of ${grant.who} issued a token for someone else`);
        }
      }
      break;
    }
    case 'fly': {
      const delivery = deliveryOf(body);
      if (!ok && !delivery) break;
      // Only the person whose token came, by Bearer or by cookie with the CSRF field, gets a code or token.
      const viaBearer = s.placed.some((p) => p.via === 'bearer');
      const viaCookie =
        !s.plan.auth && s.placed.some((p) => p.via === 'cookie' && s.csrfValues.includes(p.csrf));
      if (!viaBearer && !viaCookie)
        wrong('a fly page with a code or token for a request without a valid credential and its CSRF');
      if (method !== 'POST') wrong(`${method} /sky/fly handed something over`);
      const verdict = cliVerdict(formParams(s.form), true);
      if (s.form === null || !verdict.valid) {
        problems.push('/sky/fly handed something over for a form it should refuse');
        break;
      }
      if (!delivery) {
        if (method !== 'HEAD') problems.push('/sky/fly answered 200 without a handover');
        break;
      }
      if ((delivery.kind === 'code') !== (verdict.cli !== undefined))
        problems.push(`/sky/fly handed over a ${delivery.kind} to ${verdict.cli ? 'the sky CLI' : 'fly'}`);
      if (verdict.cli && !body.includes(verdict.cli.nonce)) problems.push('the code goes without its nonce');
      if (!body.includes(`http://127.0.0.1:${verdict.port}`))
        problems.push('the handover goes to another port');
      if (delivery.kind === 'code' && !/^[A-Za-z0-9_-]{43}$/.test(delivery.value))
        problems.push(`a code of the wrong shape: ${delivery.value.slice(0, 60)}`);
      if (delivery.kind === 'token') {
        const sub = claimsOf(delivery.value.replace(/^bearer /, ''))['sub'];
        if (!s.placed.some((p) => arena.people[p.who].sub === sub)) wrong('a fly token for someone else');
      }
      break;
    }
    case 'login': {
      const renewed = s.placed.some((p) => p.via === 'cookie') || s.sessions.length > 0;
      // `code` or `error` in the query belongs to the callback: refused, never taken for one.
      const callbackParams = Object.hasOwn(s.query, 'code') || Object.hasOwn(s.query, 'error');
      const verdict = callbackParams ? { valid: false } : cliVerdict(s.query, false);
      if (method === 'GET' || method === 'HEAD') {
        // Every parameter is judged before anything else happens (issue #13).
        if (!verdict.valid && status !== 400)
          problems.push(
            `an invalid fly_port, code_challenge, code_challenge_method or nonce answered ${status}`,
          );
        const redirect = s.query['redirect_uri'];
        const long = typeof redirect === 'string' && redirect.length > 200;
        if (verdict.valid && !long && status === 400) problems.push('a valid login query refused');
        if (status === 400 && method === 'GET') {
          const names = verdict.valid
            ? /redirect_uri is longer than 2048/
            : /fly_port|code_challenge|nonce|redirect_uri|code belongs|error belongs/;
          if (!names.test(body))
            problems.push(`a 400 of /sky/login that names no parameter: ${body.slice(0, 200)}`);
        }
      }
      if (status === 302 || status === 303) {
        const location = headerOf(a, 'location') ?? '';
        let origin = '';
        try {
          origin = new URL(location).origin;
        } catch {
          problems.push(`login redirect not absolute: ${location}`);
        }
        // The canonical /sky/login for a path in another case (its session cookie would not match).
        const canonical = location.startsWith(`${arena.url}/sky/login`);
        if (origin === new URL(arena.url).origin && !canonical) {
          if (!renewed) wrong('login landed without a token or session');
        } else if (origin !== new URL(arena.fake.webUrl).origin && !canonical) {
          problems.push(`login redirected off the node and Bitbucket: ${location}`);
        } else if (origin === new URL(arena.fake.webUrl).origin) {
          // To Bitbucket: the pending login travels in its sealed cookie; nothing is kept server-side.
          if (!set.some((c) => /^sky_login_[^=]+=[^;]/.test(c)))
            problems.push('a login started without its cookie');
          if (!s.cookieNames.has('sky_session') && set.some((c) => /^sky_session=[^;]/.test(c)))
            problems.push('an anonymous login started a session');
        }
      } else if (ok && method === 'GET') {
        if (!(renewed && verdict.port !== undefined)) wrong('fly page without a token or session');
        // The page asks; nothing leaves the browser before the click.
        if (/id="handover"/.test(body) || /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/.test(body))
          wrong('the fly page of /sky/login hands over something before the click');
        if (!body.includes(`<form method="post" action="${arena.url}/sky/fly"`))
          problems.push('the fly page has no form for POST /sky/fly');
        if (!body.includes(`name="fly_port" value="${verdict.port}"`))
          problems.push('the fly page does not carry the fly_port');
        const cli = verdict.cli;
        if (cli) {
          for (const [name, v] of [
            ['code_challenge', cli.challenge],
            ['nonce', cli.nonce],
          ] as const)
            if (!body.includes(`name="${name}" value="${v}"`))
              problems.push(`the fly page does not carry the ${name}`);
          if (!body.includes(`<code id="confirmation">${confirmationCode(cli.challenge)}</code>`))
            problems.push('the fly page does not show the confirmation code of this challenge');
        } else if (body.includes('name="code_challenge"')) {
          problems.push('a fly page for Concourse’s fly carries a challenge');
        }
      }
      break;
    }
    case 'callback': {
      if (status < 400 && method !== 'OPTIONS') wrong(`callback answered ${status} without a real code`);
      const login = s.login;
      if (!login || (method !== 'GET' && method !== 'HEAD')) break;
      const { code, state, error } = s.query;
      const cleared = set.some((c) => c.startsWith(`${login.name}=;`) && c.includes(EPOCH));
      // The cookie this state names was sent (only a changed state, or no cookie at all, names none).
      const own = login.cookie !== null && login.variant !== 'tampered';
      const expect = (want: number, says: string | null, clears: boolean): void => {
        if (status !== want)
          problems.push(`a callback with a ${login.variant} login answered ${status}, not ${want}`);
        else if (method === 'GET' && says !== null && !body.includes(says))
          problems.push(`a callback with a ${login.variant} login does not say "${says}"`);
        if (clears && !cleared) problems.push(`a callback with a ${login.variant} login left its cookie`);
      };
      if (error !== undefined) expect(403, null, own && state === login.sentState);
      else if (typeof code !== 'string' || code === '' || typeof state !== 'string' || state === '')
        expect(400, 'missing its code or state', false);
      // Another state than the login's (its own was lost after a `#`): no cookie of that name.
      else if (state !== login.sentState) expect(400, null, false);
      else {
        const variant = login.variant === 'none' ? 'live' : login.variant;
        expect(400, CALLBACK_SAYS[variant], own);
        if (variant === 'live' && body.includes('This login link is no longer valid'))
          problems.push('a live login state was refused');
      }
      break;
    }
    case 'legacy':
      if (status === 302 && !(headerOf(a, 'location') ?? '').startsWith(`${arena.url}/sky/log`)) {
        problems.push(`legacy redirect to ${headerOf(a, 'location')}`);
      }
      break;
    default:
      break;
  }
  return problems;
}
