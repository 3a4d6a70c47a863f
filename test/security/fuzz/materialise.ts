import { parse as parseQuery, type ParsedUrlQuery } from 'node:querystring';
import { challengeOf, newVerifier } from '../../../lib/tokens/pkce';
import { wellFormed, wire } from '../raw-http';
import { Arena, type MintedCode, type Name } from './arena';
import {
  type Kind,
  type LiveState,
  type Mutation,
  type Plan,
  type TokenRef,
  type Value,
  type VerifierVariant,
} from './plans';

/** A pending login as the callback gets it: the state sent, and the sealed cookie (its name, its value or none). */
export interface PendingLogin {
  variant: LiveState;
  /** The state this login's cookie belongs to. */
  state: string;
  /** The state the callback carries (the cookie's, or a changed one). */
  sentState: string;
  name: string;
  /** The cookie's value as sent (URI-encoded), or null when the request carries none. */
  cookie: string | null;
}

// ---------------------------------------------------------------------------------------------------
// Sending a plan: materialise it against the arena, and remember what the request carried.
// ---------------------------------------------------------------------------------------------------

interface Placement {
  who: Name;
  source: 'browser' | 'cli';
  token: string;
  csrf: string;
  via: 'bearer' | 'cookie';
}
export interface Sent {
  plan: Plan;
  kind: Kind;
  /** The route's :team parameter as Express decodes it. */
  team: string | undefined;
  /** Live, unchanged tokens somewhere in the request: the only people a grant may go to. */
  placed: Placement[];
  sessions: Name[];
  csrfValues: string[];
  refresh: { who: Name; state: 'live' | 'spent'; token: string }[];
  /** Authorization codes in the body, as they really were (a live one only if minted for this request). */
  codes: { who: Name; state: 'live' | 'spent' | 'unknown'; code: string; verifier: string }[];
  /** A form body as the server parses it (name → its values, decoded); null for any other body. */
  form: Map<string, string[]> | null;
  /** The query as Express parses it (node:querystring). */
  query: ParsedUrlQuery;
  /** The good challenge of a POST /sky/fly form, and the verifier it was made from. */
  fly: { verifier: string; challenge: string } | null;
  /** The pending login a callback carries. */
  login: PendingLogin | null;
  /** Names of the cookies the request carried. */
  cookieNames: Set<string>;
  /** Every credential the request carried, live or not: no error body may repeat one. */
  secrets: string[];
  /** Request-derived strings with HTML specials: no HTML answer may contain one as it was sent. */
  reflected: string[];
}

function mutate(token: string, mutation: Mutation): string {
  switch (mutation) {
    case 'none':
      return token;
    case 'truncate':
      return token.slice(0, -5);
    case 'flip': {
      const i = Math.floor(token.length / 2);
      return `${token.slice(0, i)}${token[i] === 'A' ? 'B' : 'A'}${token.slice(i + 1)}`;
    }
    case 'upper':
      return token.toUpperCase();
    case 'extra-segment':
      return `${token}.x`;
    case 'strip-signature':
      return token.slice(0, token.lastIndexOf('.') + 1);
  }
}

function resolveToken(arena: Arena, ref: TokenRef): { token: string; live: Placement | null } {
  const person = arena.people[ref.who];
  let token: string;
  let source: 'browser' | 'cli' | null = null;
  if (ref.source === 'browser' || ref.source === 'cli') {
    token = person[ref.source].token;
    source = ref.source;
  } else {
    const pool = arena[ref.source][ref.who];
    token = pool[pool.length - 1] ?? 'none';
  }
  const sent = mutate(token, ref.mutation);
  const live =
    source !== null && ref.mutation === 'none'
      ? { who: ref.who, source, token, csrf: person[source].csrf, via: 'bearer' as const }
      : null;
  return { token: sent, live };
}

const SPECIALS = /[<>"']/;

/**
 * What the `skymarshal_auth<N>` cookies of a Cookie header spell, chunk 0 to the highest, the first
 * cookie of a name counting (Concourse's chunked cookie); null when a chunk is missing or an unchunked
 * `skymarshal_auth` comes first in the header (it wins over chunks).
 */
function spelledByChunks(cookies: string[]): string | null {
  const first = new Map<string, string>();
  for (const c of cookies) {
    const eq = c.indexOf('=');
    const name = c.slice(0, eq).trim();
    if (!first.has(name)) first.set(name, c.slice(eq + 1));
  }
  if (first.has('skymarshal_auth')) return null;
  const indices = [...first.keys()].flatMap((n) => /^skymarshal_auth(\d+)$/.exec(n)?.[1] ?? []).map(Number);
  if (indices.length === 0) return null;
  const parts: string[] = [];
  for (let i = 0; i <= Math.max(...indices); i++) {
    const part = first.get(`skymarshal_auth${i}`);
    if (part === undefined) return null;
    parts.push(part);
  }
  return parts.join('');
}

/** What a request needs prepared before it is sent: a started login, freshly minted codes. */
export interface Prepared {
  login: PendingLogin | null;
  /** Live codes, one for each `{ t: 'code', state: 'live' }` of the body, in order. */
  codes: MintedCode[];
}

export function materialise(arena: Arena, plan: Plan, prepared: Prepared): { request: Buffer; sent: Sent } {
  const headers: [string, string][] = [];
  const placed: Placement[] = [];
  const sessions: Name[] = [];
  const secrets: string[] = [];
  const reflected: string[] = [];
  const csrfValues: string[] = [];
  const refresh: Sent['refresh'] = [];
  const codes: Sent['codes'] = [];
  const cookieNames = new Set<string>();
  let form: Map<string, string[]> | null = null;
  let fly: Sent['fly'] = null;
  const login = prepared.login;
  const note = (raw: string): void => {
    if (raw.length >= 8 && SPECIALS.test(raw)) reflected.push(raw);
  };
  const valueText = (v: Value, via: 'bearer' | 'cookie'): string => {
    if (v.t === 'text') {
      note(v.text);
      return v.text;
    }
    const { token, live } = resolveToken(arena, v);
    secrets.push(token);
    if (live) placed.push({ ...live, via });
    return token;
  };

  if (plan.auth) {
    const scheme = plan.auth.scheme;
    note(scheme);
    headers.push(['Authorization', `${scheme}${plan.auth.sep}${valueText(plan.auth.value, 'bearer')}`]);
  }

  const cookies: string[] = [];
  const chunked: Placement[] = [];
  // First, so neither a cookie of the same name nor a flood of others hides it (the first one counts).
  if (login?.cookie) cookies.push(`${login.name}=${login.cookie}`);
  for (const c of plan.cookies) {
    if (c.t === 'cookie') {
      const v = valueText(c.value, 'cookie');
      note(c.name);
      const val =
        c.form === 'bearer'
          ? encodeURIComponent(`bearer ${wellFormed(v)}`)
          : c.form === 'bearer-raw'
            ? `bearer ${v}`
            : c.form === 'quoted'
              ? `"${encodeURIComponent(`bearer ${wellFormed(v)}`)}"`
              : v;
      cookies.push(`${c.name}=${val}`);
    } else if (c.t === 'chunks') {
      const { token, live } = resolveToken(arena, c.ref);
      secrets.push(token);
      if (live && (c.shape === 'ok' || c.shape === 'reordered')) placed.push({ ...live, via: 'cookie' });
      if (live) chunked.push(live);
      const whole = encodeURIComponent(c.shape === 'no-prefix' ? token : `bearer ${token}`);
      const size = Math.ceil(whole.length / c.count);
      let parts = Array.from({ length: c.count }, (_, i) => whole.slice(i * size, (i + 1) * size));
      let names = parts.map((_, i) => `skymarshal_auth${i}`);
      if (c.shape === 'reordered') {
        parts = [...parts].reverse();
        names = [...names].reverse();
      } else if (c.shape === 'gap') {
        parts.splice(1, 1);
        names.splice(1, 1);
      } else if (c.shape === 'swap') {
        parts = [parts[1] ?? '', parts[0] ?? '', ...parts.slice(2)];
      } else if (c.shape === 'dup') {
        parts[1] = parts[0] ?? '';
      }
      names.forEach((name, i) => cookies.push(`${name}=${parts[i] ?? ''}`));
    } else if (c.t === 'session') {
      const session = arena.people[c.who].browser.session;
      secrets.push(decodeURIComponent(session));
      sessions.push(c.who);
      cookies.push(`sky_session=${session}`);
    } else {
      for (let i = 0; i < c.count; i++) cookies.push(`c${i}=${'v'.repeat(c.size)}`);
    }
  }
  for (const c of cookies) cookieNames.add(c.slice(0, Math.max(0, c.indexOf('='))).trim());
  // Chunk sets that mix (a gap in one filled by another's chunk, first of a name counting) may still
  // spell a live token whole: then it was sent.
  const spelled = spelledByChunks(cookies);
  for (const live of chunked) {
    if (spelled === encodeURIComponent(`bearer ${live.token}`) && !placed.some((p) => p.token === live.token))
      placed.push({ ...live, via: 'cookie' });
  }
  if (cookies.length > 0) headers.push(['Cookie', cookies.join('; ')]);

  if (plan.csrf) {
    if (plan.csrf.t === 'csrf') {
      const value = arena.people[plan.csrf.who][plan.csrf.source].csrf;
      csrfValues.push(value);
      headers.push(['X-Csrf-Token', value]);
    } else {
      note(plan.csrf.text);
      headers.push(['X-Csrf-Token', plan.csrf.text]);
    }
  }
  if (plan.accept !== null) headers.push(['Accept', plan.accept]);
  if (plan.requestId !== null) {
    note(plan.requestId);
    headers.push(['X-Request-Id', plan.requestId]);
  }
  if (plan.contentType !== null) headers.push(['Content-Type', plan.contentType]);
  for (const [name, v] of plan.extra) {
    note(v);
    headers.push([name, v]);
  }

  let body: Buffer | null = null;
  if (plan.body) {
    if (plan.body.t === 'form') {
      // Codes first: a verifier names the body's first code, wherever it stands.
      const minted = [...prepared.codes];
      for (const [, v] of plan.body.params) {
        if (v.t !== 'code') continue;
        const spent = arena.spentCodes.filter((c) => c.who === v.who).at(-1) ?? arena.spentCodes.at(-1);
        const live = v.state === 'live' || (v.state === 'spent' && !spent) ? minted.shift() : undefined;
        if (live) codes.push({ ...live, state: 'live' });
        else if (v.state === 'spent' && spent) codes.push({ ...spent, state: 'spent' });
        else codes.push({ who: v.who, state: 'unknown', code: newVerifier(), verifier: newVerifier() });
      }
      let nextCode = 0;
      const own = codes[0]?.verifier ?? newVerifier();
      const parsed = new Map<string, string[]>();
      const pairs = plan.body.params.map(([k, v]) => {
        let text: string;
        if (v.t === 'text') {
          text = v.text;
          note(text);
        } else if (v.t === 'csrf') {
          text = arena.people[v.who][v.source ?? 'browser'].csrf;
          csrfValues.push(text);
        } else if (v.t === 'code') {
          text = codes[nextCode++]?.code ?? '';
          secrets.push(text);
        } else if (v.t === 'verifier') {
          text = verifierOf(own, v.variant);
          secrets.push(text);
        } else if (v.t === 'challenge') {
          const verifier = newVerifier();
          fly = { verifier, challenge: challengeOf(verifier) };
          text = fly.challenge;
        } else {
          const spent = arena.spent[arena.spent.length - 1];
          if (v.state === 'spent' && spent) {
            text = spent.token;
            refresh.push({ who: spent.who, state: 'spent', token: text });
          } else {
            text = arena.people[v.who].cli.refresh;
            refresh.push({ who: v.who, state: 'live', token: text });
          }
          secrets.push(text);
        }
        const decoded = wellFormed(text);
        parsed.set(k, [...(parsed.get(k) ?? []), decoded]);
        return `${encodeURIComponent(k)}=${encodeURIComponent(decoded)}`;
      });
      form = parsed;
      body = Buffer.from(pairs.join('&'));
    } else {
      note(plan.body.text);
      body = Buffer.from(plan.body.text, 'utf8');
    }
  } else if (plan.method === 'POST' || plan.method === 'PUT') {
    body = Buffer.alloc(0);
  }

  let target = `${plan.path}${plan.query}`;
  if (login !== null) target += `${plan.query ? '&' : '?'}state=${encodeURIComponent(login.sentState)}`;
  // As Express reads it: what follows `?`, up to a `#` (a fragment, which the server drops).
  const at = target.indexOf('?');
  const query = at < 0 ? {} : parseQuery(target.slice(at + 1).split('#')[0] ?? '');
  for (const part of [
    plan.path,
    ...plan.query
      .slice(1)
      .split('&')
      .flatMap((pair) => pair.split('=')),
  ]) {
    try {
      note(decodeURIComponent(part));
    } catch {
      note(part);
    }
  }

  const { kind, team } = routeOf(plan.path);
  return {
    request: wire(arena.port, plan.method, target, headers, body),
    sent: {
      plan,
      kind,
      team,
      placed,
      sessions,
      csrfValues,
      refresh,
      codes,
      form,
      query,
      fly,
      login,
      cookieNames,
      secrets,
      reflected,
    },
  };
}

/** A code_verifier that is the code's own, or a near miss of it. */
function verifierOf(own: string, variant: VerifierVariant): string {
  switch (variant) {
    case 'own':
      return own;
    case 'other':
      return newVerifier();
    case 'near':
      return `${own.slice(0, -1)}${own.endsWith('A') ? 'B' : 'A'}`;
    case 'challenge':
      return challengeOf(own);
    case 'short':
      return own.slice(0, 42);
    case 'long':
      return `${own}${'x'.repeat(129 - own.length)}`;
    case 'upper':
      return own.toUpperCase();
  }
}

/** The route Express picks for a path: sky's in their own case, the host's in any; one trailing slash allowed. */
function routeOf(rawPath: string): { kind: Kind; team: string | undefined } {
  if (rawPath.includes('//')) return { kind: 'other', team: undefined };
  const p = rawPath.length > 1 ? rawPath.replace(/\/$/, '') : rawPath;
  const sky: Record<string, Kind> = {
    '/sky/login': 'login',
    '/sky/issuer/callback': 'callback',
    '/sky/fly': 'fly',
    '/sky/logout': 'logout',
    '/sky/token': 'token',
    '/sky/issuer/keys': 'keys',
    '/login': 'legacy',
    '/logout': 'legacy',
    '/api/v1/user': 'user',
    '/api/v1/teams': 'teams',
  };
  const hostRoutes: Record<string, Kind> = { '/host/admin': 'host-admin', '/': 'landing' };
  const kind = sky[p] ?? hostRoutes[p.toLowerCase()];
  if (kind) return { kind, team: undefined };
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  const team = /^\/api\/v1\/teams\/([^/]+)$/.exec(p)?.[1];
  if (team !== undefined) return { kind: 'team', team: decode(team) };
  const host = /^\/host\/teams\/([^/]+)\/pipelines$/i.exec(p)?.[1];
  if (host !== undefined) return { kind: 'host-team', team: decode(host) };
  return { kind: 'other', team: undefined };
}

/** Which methods each route answers (HEAD rides on GET). */
export const SERVES: Record<Kind, string[]> = {
  login: ['GET', 'HEAD'],
  callback: ['GET', 'HEAD'],
  fly: ['POST'],
  logout: ['GET', 'HEAD', 'POST'],
  token: ['POST'],
  keys: ['GET', 'HEAD'],
  legacy: ['GET', 'HEAD'],
  user: ['GET', 'HEAD'],
  teams: ['GET', 'HEAD'],
  team: ['GET', 'HEAD', 'PUT', 'DELETE'],
  'host-team': ['GET', 'HEAD', 'POST'],
  'host-admin': ['GET', 'HEAD'],
  landing: ['GET', 'HEAD'],
  other: [],
};
/** The routes a rate limiter guards (429 with Retry-After is allowed there, nowhere else). */
export const RATE_LIMITED = new Set<Kind>(['callback', 'token']);
export const OAUTH_ERRORS = new Set([
  'invalid_request',
  'invalid_grant',
  'unsupported_grant_type',
  'temporarily_unavailable',
  'server_error',
  'invalid_client',
  'unauthorized_client',
]);
