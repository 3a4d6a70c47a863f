import fc from 'fast-check';
import { ROLES } from '../../../lib/teams/auth';
import { encode } from '../raw-http';
import { type Name, NAMES, THEIRS } from './arena';

// ---------------------------------------------------------------------------------------------------
// Plans: what the arbitraries generate. Credentials are named, not embedded, and resolved at send time
// against the arena's current people (a logout in one run replaces a token for the next).
// ---------------------------------------------------------------------------------------------------

type Source = 'browser' | 'cli' | 'dead' | 'forged';
export type Mutation = 'none' | 'truncate' | 'flip' | 'upper' | 'extra-segment' | 'strip-signature';
export interface TokenRef {
  t: 'token';
  who: Name;
  source: Source;
  mutation: Mutation;
}
interface Text {
  t: 'text';
  text: string;
}
export type Value = TokenRef | Text;
type CookiePlan =
  | { t: 'cookie'; name: string; value: Value; form: 'bearer' | 'bearer-raw' | 'bare' | 'quoted' }
  | {
      t: 'chunks';
      ref: TokenRef;
      shape: 'ok' | 'reordered' | 'gap' | 'swap' | 'dup' | 'no-prefix';
      count: number;
    }
  | { t: 'session'; who: Name }
  | { t: 'many'; count: number; size: number };
type CsrfPlan = { t: 'csrf'; who: Name; source: 'browser' | 'cli' } | Text;
type BodyPlan = Text | { t: 'form'; params: [string, FormValue][] } | { t: 'json'; text: string };
/** How a code_verifier relates to the body's first code: its own verifier, or a near miss of it. */
export type VerifierVariant = 'own' | 'other' | 'near' | 'challenge' | 'short' | 'long' | 'upper';
type FormValue =
  | Text
  | { t: 'refresh'; who: Name; state: 'live' | 'spent' }
  /** A person's CSRF token (the browser login's unless said otherwise). */
  | { t: 'csrf'; who: Name; source?: 'browser' | 'cli' }
  /** An authorization code: minted for this request, spent before, or well-formed and unknown. */
  | { t: 'code'; who: Name; state: 'live' | 'spent' | 'unknown' }
  | { t: 'verifier'; variant: VerifierVariant }
  /** A good S256 challenge of a verifier the test keeps (so a delivered code can be redeemed). */
  | { t: 'challenge' };

export type Kind =
  | 'login'
  | 'callback'
  | 'fly'
  | 'logout'
  | 'token'
  | 'keys'
  | 'legacy'
  | 'user'
  | 'teams'
  | 'team'
  | 'host-team'
  | 'host-admin'
  | 'landing'
  | 'other';

export interface Plan {
  method: string;
  path: string;
  query: string;
  auth: { scheme: string; sep: string; value: Value } | null;
  cookies: CookiePlan[];
  csrf: CsrfPlan | null;
  accept: string | null;
  contentType: string | null;
  requestId: string | null;
  extra: [string, string][];
  body: BodyPlan | null;
  /** Callback only: first start a login, so the callback carries its state and its sealed cookie. */
  liveState: LiveState;
}

/**
 * A pending login at the callback: `live` as the browser holds it; `tampered` its state changed; the
 * sealed cookie tampered with, expired, replayed after use, sealed under another signing key, swapped
 * with another login's, or not sent at all (another browser).
 */
export type LiveState =
  | 'none'
  | 'live'
  | 'tampered'
  | 'cookie-tampered'
  | 'expired'
  | 'replayed'
  | 'foreign'
  | 'swapped'
  | 'no-cookie';
const LIVE_STATES: LiveState[] = [
  'live',
  'live',
  'tampered',
  'cookie-tampered',
  'expired',
  'replayed',
  'foreign',
  'swapped',
  'no-cookie',
];

// --- leaves ------------------------------------------------------------------------------------------

const NASTY = [
  '',
  ' ',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  "'-alert(1)-'",
  '</title><svg onload=alert(1)>',
  '%00',
  '%',
  '%zz',
  '%E0%A4%A',
  '../../etc/passwd',
  '..%2f..%2f',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '{"__proto__":{"is_admin":true}}',
  'null',
  'undefined',
  'NaN',
  '-1',
  '0',
  '1e309',
  '99999999999999999999',
  'true',
  '[]',
  '{}',
  'bearer',
  'Bearer ',
  'javascript:alert(1)',
  '//evil.example',
  '/\\evil.example',
  'https://evil.example/',
  '\u202e',
  '😀',
  'é',
  'İ',
  '\uFEFF',
  '\t',
  '\\',
  ';',
  '=',
  ',',
  'a'.repeat(5000),
];

const nasty = fc.constantFrom(...NASTY);
const text: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 3, arbitrary: nasty },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 200, maxLength: 3000 }) },
);
const asText = (arb: fc.Arbitrary<string>): fc.Arbitrary<Text> =>
  arb.map((t) => ({ t: 'text' as const, text: t }));
const nameArb = fc.constantFrom(...NAMES);
const tokenRef: fc.Arbitrary<TokenRef> = fc.record({
  t: fc.constant('token' as const),
  who: nameArb,
  source: fc.constantFrom<Source>('browser', 'cli', 'browser', 'cli', 'dead', 'forged'),
  mutation: fc.oneof(
    { weight: 4, arbitrary: fc.constant<Mutation>('none') },
    {
      weight: 1,
      arbitrary: fc.constantFrom<Mutation>('truncate', 'flip', 'upper', 'extra-segment', 'strip-signature'),
    },
  ),
});
const value: fc.Arbitrary<Value> = fc.oneof(
  { weight: 2, arbitrary: tokenRef },
  { weight: 1, arbitrary: asText(text) },
);

const COOKIE_NAMES = [
  'skymarshal_auth',
  'skymarshal_auth',
  'skymarshal_auth0',
  'skymarshal_auth1',
  'skymarshal_auth2',
  'skymarshal_auth29',
  'skymarshal_auth30',
  'skymarshal_auth99',
  'skymarshal_auth100',
  'skymarshal_auth01',
  'skymarshal_csrf',
  'sky_session',
  'SKYMARSHAL_AUTH',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
];
const cookie: fc.Arbitrary<CookiePlan> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('cookie' as const),
      name: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...COOKIE_NAMES) },
        { weight: 1, arbitrary: text },
      ),
      value,
      form: fc.constantFrom(
        'bearer' as const,
        'bearer' as const,
        'bearer-raw' as const,
        'bare' as const,
        'quoted' as const,
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('chunks' as const),
      ref: tokenRef,
      shape: fc.constantFrom(
        'ok' as const,
        'ok' as const,
        'reordered' as const,
        'gap' as const,
        'swap' as const,
        'dup' as const,
        'no-prefix' as const,
      ),
      count: fc.integer({ min: 2, max: 5 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('session' as const), who: nameArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('many' as const),
      count: fc.integer({ min: 30, max: 150 }),
      size: fc.integer({ min: 1, max: 80 }),
    }),
  },
);
const csrf: fc.Arbitrary<CsrfPlan | null> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('csrf' as const),
      who: nameArb,
      source: fc.constantFrom('browser' as const, 'cli' as const),
    }),
  },
  { weight: 1, arbitrary: asText(text) },
);
const ACCEPTS = [
  'application/json',
  'text/html',
  'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  '*/*',
  'application/json;q=0, text/html',
  'image/png',
  '',
];
const optional = <T>(arb: fc.Arbitrary<T>, weight = 1): fc.Arbitrary<T | null> =>
  fc.oneof({ weight, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
const accept = optional(
  fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...ACCEPTS) }, { weight: 1, arbitrary: text }),
);
const requestId = optional(
  fc.oneof(fc.constantFrom('abc-123', 'x'.repeat(64), 'x'.repeat(65), '<script>', '../..'), text),
  2,
);
const EXTRA_HEADERS = [
  'X-Forwarded-For',
  'X-Forwarded-Proto',
  'X-Forwarded-Host',
  'Origin',
  'Referer',
  'User-Agent',
  'X-HTTP-Method-Override',
  'Range',
  'If-None-Match',
  'Expect',
  'Content-Encoding',
  'Accept-Encoding',
  'Accept-Language',
  'Accept-Charset',
  'Authorization',
  'Cookie',
  'X-Csrf-Token',
  'X-Request-Id',
];
const headerName = fc
  .oneof(
    { weight: 3, arbitrary: fc.constantFrom(...EXTRA_HEADERS) },
    { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/) },
  )
  .filter((n) => !/^(host|content-length|transfer-encoding|connection|upgrade|te|trailer)$/i.test(n));
const extra = fc.array(
  fc.tuple(headerName, fc.oneof(text, fc.constantFrom('100-continue', 'gzip', 'br', 'identity'))),
  {
    maxLength: 3,
  },
);
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'TRACE', 'get', 'FOO'];
const otherMethod = fc.constantFrom(...METHODS);

/**
 * sky's routers are case-sensitive (as Concourse's); the host app's routes match in any case; both take
 * one trailing slash; the other variants match nothing.
 */
type PathVariant = 'as-is' | 'upper' | 'trailing-slash' | 'double-slash' | 'dot-segment' | 'encoded-slash';
const pathVariant = fc.oneof(
  { weight: 8, arbitrary: fc.constant<PathVariant>('as-is') },
  {
    weight: 1,
    arbitrary: fc.constantFrom<PathVariant>(
      'upper',
      'trailing-slash',
      'double-slash',
      'dot-segment',
      'encoded-slash',
    ),
  },
);
function applyVariant(p: string, variant: PathVariant): string {
  switch (variant) {
    case 'as-is':
      return p;
    case 'upper':
      return p.toUpperCase();
    case 'trailing-slash':
      return `${p}/`;
    case 'double-slash':
      return `/${p}`;
    case 'dot-segment':
      return p.replace(/\/([^/]*)$/, '/./$1');
    case 'encoded-slash':
      return p.replace(/\/(?=[^/]*$)/, '%2F');
  }
}

/** Query strings: encoded pairs, raw pairs, repeated names, or nothing. */
function query(pairs: fc.Arbitrary<[string, string][]>): fc.Arbitrary<string> {
  return fc
    .tuple(pairs, fc.array(fc.tuple(text, text), { maxLength: 3 }), fc.boolean())
    .map(([known, junk, raw]) => {
      const all = [...known, ...junk];
      if (all.length === 0) return '';
      return `?${all.map(([k, v]) => `${encode(k, raw)}=${encode(v, raw)}`).join('&')}`;
    });
}

/** The common part of every plan: credentials and headers, biased towards requests that carry some. */
const common = fc.record({
  auth: optional(
    fc.record({
      scheme: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom('Bearer', 'bearer', 'BEARER') },
        { weight: 1, arbitrary: fc.constantFrom('Basic', 'Token', '', 'Bearer:') },
        { weight: 1, arbitrary: text },
      ),
      sep: fc.constantFrom(' ', ' ', ' ', '  ', '\t', ''),
      value,
    }),
  ),
  cookies: fc.array(cookie, { maxLength: 4 }),
  csrf,
  accept,
  requestId,
  extra,
});

const CONTENT_TYPES_FORM = [
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'application/x-www-form-urlencoded; charset=utf-16',
  'application/x-www-form-urlencoded; charset=latin1',
  'application/json',
  'text/plain',
  'multipart/form-data; boundary=x',
  '*/*',
];
const CONTENT_TYPES_JSON = [
  'application/json',
  'application/json',
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/merge-patch+json',
  'application/x-www-form-urlencoded',
  'text/plain',
  'text/yaml',
  'multipart/form-data; boundary=x',
];
const contentType = (types: string[]): fc.Arbitrary<string | null> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...types) },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: text },
  );

// --- team configs: near-valid ones that never name bob or carol, JSON of any shape, pollution, YAML --

export const safeEntry: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'alice',
      'ALICE',
      ' alice ',
      'bitbucket-cloud:alice',
      'dave',
      'zed',
      '{a11ce000-0000-4000-8000-000000000001}',
      'team-x',
      'x/y',
    ),
  },
  { weight: 3, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: 230, max: 270 }).map((n) => 'z'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 230, max: 270 }).map((n) => `bitbucket-cloud:${'z'.repeat(n)}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', ' ', 'bitbucket-cloud:', 'BITBUCKET-CLOUD:', 'İ'.repeat(200), '__proto__'),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(fc.integer(), fc.constant(null), fc.boolean(), fc.constant({}), fc.constant([])),
  },
);
export const roleName = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...ROLES) },
  { weight: 1, arbitrary: fc.constantFrom('admin', 'Owner', '__proto__', 'constructor', '') },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);
const members: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record(
      { users: fc.array(safeEntry, { maxLength: 5 }), groups: fc.array(safeEntry, { maxLength: 5 }) },
      { requiredKeys: [] },
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({ users: fc.string(), teams: fc.array(fc.string()) }, { requiredKeys: [] }),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
);
export const teamConfig: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.dictionary(roleName, members, { minKeys: 0, maxKeys: 4 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.anything({ maxDepth: 3, withNullPrototype: true, withObjectString: true }) },
);
const POLLUTION = [
  '{"auth":{"__proto__":{"users":["alice"]}}}',
  '{"__proto__":{"auth":{"owner":{"users":["alice"]}}}}',
  '{"auth":{"owner":{"users":["alice"]},"__proto__":{"owner":{"users":["dave"]}}}}',
  '{"auth":{"owner":{"users":["alice"],"__proto__":{"groups":["x"]}}}}',
  '{"auth":{"constructor":{"prototype":{"owner":{"users":["dave"]}}}}}',
  '{"auth":{"owner":{"users":["alice"]}},"constructor":{"prototype":{"is_admin":true}}}',
  '{"auth":{"owner":{"users":{"__proto__":["alice"]}}}}',
  '{"auth":{"owner":{"users":["alice"]},"owner":{"users":["dave"]}}}',
];
export const YAMLISH = [
  'roles:\n- name: owner\n  bitbucket-cloud:\n    users: [alice]\n',
  '---\nauth: {owner: {users: [alice]}}\n',
  '!!js/function "function(){}"',
  'a: &a [*a]',
  'auth:\n  owner:\n    users:\n      - alice\n',
  '{auth: {owner: {users: [alice]}}}',
];
const jsonBody: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 6, arbitrary: teamConfig.map((auth) => JSON.stringify({ auth }) ?? 'null') },
    { weight: 1, arbitrary: teamConfig.map((auth) => JSON.stringify({ auth, extra: 1 }) ?? 'null') },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.anything({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'undefined') },
    { weight: 2, arbitrary: fc.constantFrom(...POLLUTION) },
    { weight: 1, arbitrary: fc.constantFrom(...YAMLISH) },
    { weight: 1, arbitrary: text },
  )
  .filter((body) => !THEIRS.test(body));

// --- one arbitrary per route family -------------------------------------------------------------------

interface Shape {
  method: string;
  path: string;
  query?: string;
  contentType?: string | null;
  body?: BodyPlan | null;
  liveState?: Plan['liveState'];
}
const planOf = (shape: fc.Arbitrary<Shape>): fc.Arbitrary<Plan> =>
  fc.tuple(shape, common, pathVariant).map(([s, c, variant]) => ({
    ...c,
    method: s.method,
    path: applyVariant(s.path, variant),
    query: s.query ?? '',
    contentType: s.contentType ?? null,
    body: s.body ?? null,
    liveState: s.liveState ?? 'none',
  }));
const usually = (method: string, weight = 5): fc.Arbitrary<string> =>
  fc.oneof({ weight, arbitrary: fc.constant(method) }, { weight: 1, arbitrary: otherMethod });

const REDIRECTS = [
  '/',
  '/teams/main',
  '//evil.example',
  '/\\evil.example',
  '/.//evil.example',
  '/\t/evil.example',
  'https://evil.example/',
  'http://127.0.0.1:1/',
  'javascript:alert(1)',
  '%2F%2Fevil.example',
  'http://user:pw@127.0.0.1/',
  '/?csrf_token=x#frag',
];
const FLY_PORTS = [
  '65000',
  '1024',
  '65535',
  '1023',
  '65536',
  '0',
  '-1',
  '0x400',
  '1e4',
  ' 65000',
  '65000 ',
  '',
  '０',
];
/** Mostly a good port, so the parameters after it are judged too. */
const flyPortArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('65000', '1024', '65535') },
  { weight: 2, arbitrary: fc.constantFrom(...FLY_PORTS) },
  { weight: 1, arbitrary: text },
);

// --- the sky CLI's login: PKCE challenges (S256, 43 base64url characters) and nonces (16–64) ----------

const base64url = (min: number, max: number): fc.Arbitrary<string> =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b).toString('base64url'));
/** 32 bytes: 43 characters, as an S256 challenge is. */
const goodChallenge = base64url(32, 32);
/** 12–48 bytes: 16–64 characters. */
const goodNonce = base64url(12, 48);
const HOSTILE_CHALLENGES = [
  '',
  'a'.repeat(42),
  'a'.repeat(44),
  'a'.repeat(128),
  `${'a'.repeat(42)}+`,
  `${'a'.repeat(42)}/`,
  `${'a'.repeat(42)}=`,
  `${'a'.repeat(42)}.`,
  `${'a'.repeat(42)}~`,
  ` ${'a'.repeat(42)}`,
  `${'a'.repeat(43)} `,
  `${'a'.repeat(43)}\n`,
  `"><script>alert(1)</script>${'a'.repeat(15)}`,
  'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=',
];
const HOSTILE_NONCES = [
  '',
  'n'.repeat(15),
  'n'.repeat(65),
  `${'n'.repeat(15)}.`,
  `${'n'.repeat(16)}%`,
  `${'n'.repeat(16)}&code=x`,
  `"><svg onload=alert(1)>${'n'.repeat(8)}`,
  `${'n'.repeat(16)}\u00e9`,
  '../../../../etc/passwd',
];
const CHALLENGE_METHODS = ['S256', 'S256', 'plain', 's256', 'S512', '', 'S256 ', 'none'];
const challengeText = fc.oneof(
  { weight: 3, arbitrary: goodChallenge },
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_CHALLENGES) },
  { weight: 1, arbitrary: text },
);
const nonceText = fc.oneof(
  { weight: 3, arbitrary: goodNonce },
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_NONCES) },
  { weight: 1, arbitrary: text },
);
const methodText = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...CHALLENGE_METHODS) },
  { weight: 1, arbitrary: text },
);
const csrfRef = fc.record({
  t: fc.constant('csrf' as const),
  who: nameArb,
  source: fc.constantFrom<'browser' | 'cli'>('browser', 'cli'),
});
const VERIFIER_VARIANTS: VerifierVariant[] = ['other', 'near', 'challenge', 'short', 'long', 'upper'];
const verifierRef: fc.Arbitrary<FormValue> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ t: 'verifier' as const, variant: 'own' as const }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(...VERIFIER_VARIANTS).map((variant) => ({ t: 'verifier' as const, variant })),
  },
  { weight: 1, arbitrary: asText(text) },
);
const codeRef: fc.Arbitrary<FormValue> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('code' as const),
      who: nameArb,
      state: fc.constantFrom<'live' | 'spent' | 'unknown'>('live', 'live', 'live', 'spent', 'unknown'),
    }),
  },
  { weight: 1, arbitrary: asText(text) },
);

/** A POST /sky/fly form: the CSRF field, the CLI's port, and its challenge and nonce (each may be missing). */
const flyForm: fc.Arbitrary<BodyPlan> = fc
  .record(
    {
      csrf: fc.oneof({ weight: 3, arbitrary: csrfRef }, { weight: 1, arbitrary: asText(text) }),
      port: flyPortArb,
      challenge: fc.oneof(
        { weight: 3, arbitrary: fc.constant<FormValue>({ t: 'challenge' }) },
        { weight: 2, arbitrary: asText(fc.constantFrom(...HOSTILE_CHALLENGES)) },
        { weight: 1, arbitrary: asText(text) },
      ),
      method: methodText,
      nonce: nonceText,
      dup: fc.constantFrom('csrf_token', 'fly_port', 'code_challenge', 'nonce'),
      extra: fc.array(fc.tuple(fc.constantFrom('x', 'token', 'code', 'redirect_uri'), asText(text)), {
        maxLength: 2,
      }),
    },
    { requiredKeys: [] },
  )
  .map((f): BodyPlan => {
    const params: [string, FormValue][] = [];
    if (f.csrf !== undefined) params.push(['csrf_token', f.csrf]);
    if (f.port !== undefined) params.push(['fly_port', { t: 'text', text: f.port }]);
    if (f.challenge !== undefined) params.push(['code_challenge', f.challenge]);
    if (f.method !== undefined) params.push(['code_challenge_method', { t: 'text', text: f.method }]);
    if (f.nonce !== undefined) params.push(['nonce', { t: 'text', text: f.nonce }]);
    if (f.dup !== undefined) params.push([f.dup, { t: 'text', text: '1' }]);
    return { t: 'form', params: [...params, ...(f.extra ?? [])] };
  });

export const families: Record<Exclude<Kind, 'other'> | 'random', fc.Arbitrary<Plan>> = {
  login: planOf(
    fc.record({
      method: usually('GET'),
      path: fc.constant('/sky/login'),
      query: query(
        fc
          .record(
            {
              redirect_uri: fc.oneof(
                fc.constantFrom(...REDIRECTS),
                text,
                fc.integer({ min: 2030, max: 2100 }).map((n) => `/${'r'.repeat(n)}`),
              ),
              fly_port: flyPortArb,
              code_challenge: challengeText,
              code_challenge_method: methodText,
              nonce: nonceText,
              dup: fc.constantFrom(
                'redirect_uri',
                'fly_port',
                'code_challenge',
                'code_challenge_method',
                'nonce',
              ),
            },
            { requiredKeys: [] },
          )
          .map((q) => {
            const pairs: [string, string][] = [];
            for (const name of [
              'redirect_uri',
              'fly_port',
              'code_challenge',
              'code_challenge_method',
              'nonce',
            ] as const) {
              const v = q[name];
              if (v !== undefined) pairs.push([name, v]);
            }
            if (q.dup !== undefined) pairs.push([q.dup, '/']);
            return pairs;
          }),
      ),
    }),
  ),
  callback: planOf(
    fc.record({
      method: usually('GET'),
      path: fc.constant('/sky/issuer/callback'),
      query: query(
        fc
          .tuple(
            // Bitbucket's code (garbage: the fuzz never holds a real one), so the state is judged.
            fc.oneof(
              { weight: 1, arbitrary: fc.constant(null) },
              {
                weight: 4,
                arbitrary: fc.oneof(
                  fc.constantFrom('fz-not-a-code', '0123456789abcdef0123456789abcdef'),
                  text,
                ),
              },
            ),
            fc.array(
              fc.tuple(
                fc.constantFrom('code', 'state', 'error', 'error_description', 'error_uri', 'iss', 'iss'),
                text,
              ),
              { maxLength: 3 },
            ),
          )
          .map(([code, pairs]): [string, string][] => (code === null ? pairs : [['code', code], ...pairs])),
      ),
      liveState: fc.oneof(
        { weight: 1, arbitrary: fc.constant<LiveState>('none') },
        { weight: 3, arbitrary: fc.constantFrom(...LIVE_STATES) },
      ),
    }),
  ),
  fly: planOf(
    fc.record({
      method: usually('POST', 8),
      path: fc.constant('/sky/fly'),
      contentType: contentType(CONTENT_TYPES_FORM),
      body: fc.oneof(
        { weight: 6, arbitrary: flyForm },
        { weight: 1, arbitrary: asText(text) },
        { weight: 1, arbitrary: fc.json({ maxDepth: 2 }).map((t): BodyPlan => ({ t: 'json', text: t })) },
      ),
    }),
  ),
  logout: planOf(
    fc.record({
      method: fc.oneof(fc.constantFrom('GET', 'POST', 'POST'), otherMethod),
      path: fc.constant('/sky/logout'),
      contentType: contentType(CONTENT_TYPES_FORM),
      body: optional(
        fc.oneof(
          fc.record({
            t: fc.constant('form' as const),
            params: fc.array(
              fc.tuple(
                fc.constantFrom('csrf_token', 'csrf_token', 'refresh_token', 'x'),
                fc.oneof(fc.record({ t: fc.constant('csrf' as const), who: nameArb }), asText(text)),
              ),
              { maxLength: 12 },
            ),
          }),
          asText(text),
        ),
      ),
    }),
  ),
  token: planOf(
    fc.record({
      method: usually('POST', 8),
      path: fc.constant('/sky/token'),
      contentType: contentType(CONTENT_TYPES_FORM),
      body: fc.oneof(
        {
          weight: 5,
          arbitrary: fc
            .tuple(
              fc.oneof(
                fc.constantFrom(
                  'refresh_token',
                  'refresh_token',
                  'refresh_token',
                  'authorization_code',
                  'password',
                  '',
                ),
                text,
              ),
              fc.oneof(
                {
                  weight: 3,
                  arbitrary: fc.record({
                    t: fc.constant('refresh' as const),
                    who: nameArb,
                    state: fc.constantFrom('live' as const, 'live' as const, 'spent' as const),
                  }),
                },
                { weight: 1, arbitrary: asText(text) },
              ),
              fc.array(
                fc.tuple(
                  fc.constantFrom('grant_type', 'refresh_token', 'scope', 'client_id', 'x'),
                  asText(text),
                ),
                { maxLength: 11 },
              ),
            )
            .map(([grant, refresh, more]): BodyPlan => ({
              t: 'form',
              params: [['grant_type', { t: 'text', text: grant }], ['refresh_token', refresh], ...more],
            })),
        },
        {
          // The sky CLI's redemption: a code (live, spent, unknown or garbage) and a verifier (its own or not).
          weight: 5,
          arbitrary: fc
            .tuple(
              fc.oneof(
                { weight: 6, arbitrary: fc.constant('authorization_code') },
                {
                  weight: 1,
                  arbitrary: fc.constantFrom(
                    'refresh_token',
                    'Authorization_Code',
                    'authorization_code ',
                    '',
                  ),
                },
                { weight: 1, arbitrary: text },
              ),
              codeRef,
              verifierRef,
              fc.constantFrom('both', 'both', 'both', 'both', 'no-code', 'no-verifier', 'verifier-first'),
              fc.array(
                fc.tuple(
                  fc.constantFrom('code', 'code_verifier', 'grant_type', 'redirect_uri', 'client_id', 'x'),
                  asText(text),
                ),
                { maxLength: 2 },
              ),
            )
            .map(([grant, code, verifier, layout, more]): BodyPlan => {
              const c: [string, FormValue] = ['code', code];
              const v: [string, FormValue] = ['code_verifier', verifier];
              const pair =
                layout === 'no-code'
                  ? [v]
                  : layout === 'no-verifier'
                    ? [c]
                    : layout === 'verifier-first'
                      ? [v, c]
                      : [c, v];
              return { t: 'form', params: [['grant_type', { t: 'text', text: grant }], ...pair, ...more] };
            }),
        },
        { weight: 1, arbitrary: asText(text) },
        { weight: 1, arbitrary: fc.json({ maxDepth: 2 }).map((t): BodyPlan => ({ t: 'json', text: t })) },
      ),
    }),
  ),
  keys: planOf(
    fc.record({
      method: usually('GET'),
      path: fc.constant('/sky/issuer/keys'),
      query: query(fc.constant<[string, string][]>([])),
    }),
  ),
  legacy: planOf(
    fc.record({
      method: usually('GET'),
      path: fc.constantFrom('/login', '/logout'),
      query: query(
        fc.array(
          fc.tuple(
            fc.constantFrom('redirect_uri', 'fly_port'),
            fc.oneof(fc.constantFrom(...REDIRECTS, ...FLY_PORTS), text),
          ),
          { maxLength: 3 },
        ),
      ),
    }),
  ),
  user: planOf(
    fc.record({
      method: usually('GET'),
      path: fc.constant('/api/v1/user'),
      query: query(fc.constant<[string, string][]>([])),
    }),
  ),
  teams: planOf(fc.record({ method: usually('GET'), path: fc.constant('/api/v1/teams') })),
  team: planOf(
    fc
      .record({
        method: fc.oneof(
          { weight: 3, arbitrary: fc.constantFrom('GET', 'PUT', 'PUT', 'DELETE') },
          { weight: 1, arbitrary: otherMethod },
        ),
        team: teamParam(),
        contentType: contentType(CONTENT_TYPES_JSON),
        body: optional(
          jsonBody.map((t): BodyPlan => ({ t: 'json', text: t })),
          1,
        ),
      })
      .map(({ method, team, contentType: type, body }) => ({
        method,
        path: `/api/v1/teams/${team}`,
        contentType: type,
        body: method === 'PUT' || method === 'POST' ? body : null,
      })),
  ),
  'host-team': planOf(
    fc
      .record({ method: fc.constantFrom('GET', 'GET', 'POST', 'HEAD'), team: teamParam() })
      .map(({ method, team }) => ({
        method,
        path: `/host/teams/${team}/pipelines`,
      })),
  ),
  'host-admin': planOf(fc.record({ method: usually('GET'), path: fc.constant('/host/admin') })),
  landing: planOf(
    fc.record({
      method: usually('GET'),
      path: fc.constant('/'),
      query: query(fc.constant<[string, string][]>([])),
    }),
  ),
  random: planOf(
    fc.record({
      method: otherMethod,
      path: fc.oneof(
        fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)),
        fc.constantFrom(
          '/sky',
          '/sky/',
          '/sky/issuer',
          '/api',
          '/api/v1',
          '/api/v1/teams/',
          '/api/v2/user',
          '/%2e%2e/sky/token',
          '/*',
          '/sky/token%00',
        ),
        fc
          .array(text, { minLength: 1, maxLength: 4 })
          .map((segments) => `/${segments.map((s) => encode(s)).join('/')}`),
      ),
      query: query(fc.constant<[string, string][]>([])),
    }),
  ),
};

/**
 * Well-formed requests with real credentials, half of every family's inputs: pure noise rarely gets
 * past the token check, and a grant can only be wrong where something is granted.
 */
const cleanCredentials = fc.oneof(
  fc
    .record({ who: nameArb, source: fc.constantFrom<'browser' | 'cli'>('browser', 'cli') })
    .map(({ who, source }) => ({
      auth: {
        scheme: 'Bearer',
        sep: ' ',
        value: { t: 'token' as const, who, source, mutation: 'none' as const },
      },
      cookies: [] as CookiePlan[],
      csrf: null as CsrfPlan | null,
    })),
  fc
    .record({
      who: nameArb,
      source: fc.constantFrom<'browser' | 'cli'>('browser', 'cli'),
      withCsrf: fc.boolean(),
      session: fc.boolean(),
    })
    .map(({ who, source, withCsrf, session }) => ({
      auth: null,
      cookies: [
        {
          t: 'cookie' as const,
          name: 'skymarshal_auth',
          value: { t: 'token' as const, who, source, mutation: 'none' as const },
          form: 'bearer' as const,
        },
        ...(session ? [{ t: 'session' as const, who }] : []),
      ] as CookiePlan[],
      csrf: withCsrf ? ({ t: 'csrf' as const, who, source } as CsrfPlan) : null,
    })),
  fc.constant({ auth: null, cookies: [] as CookiePlan[], csrf: null as CsrfPlan | null }),
);
const validEntry = fc.oneof(
  fc.constantFrom('alice', 'dave', 'zed', ' Zed ', 'bitbucket-cloud:dave', 'x/y', 'ws:member'),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
  fc.integer({ min: 230, max: 256 }).map((n) => 'z'.repeat(n)),
);
const validConfig = fc
  .uniqueArray(fc.constantFrom(...ROLES), { minLength: 1, maxLength: 3 })
  .chain((roles) =>
    fc.tuple(
      ...roles.map((role) =>
        fc
          .record({
            users: fc.array(validEntry, { minLength: 1, maxLength: 3 }),
            groups: fc.array(validEntry, { maxLength: 2 }),
          })
          .map((m) => [role, m] as const),
      ),
    ),
  )
  .map((pairs) => Object.fromEntries(pairs))
  .filter((auth) => !THEIRS.test(JSON.stringify(auth)));
const cleanShapes: Partial<Record<keyof typeof families, fc.Arbitrary<Shape>>> = {
  login: fc
    .record({
      redirect: optional(fc.constantFrom(...REDIRECTS)),
      fly: fc.boolean(),
      cli: fc.boolean(),
      challenge: goodChallenge,
      method: fc.boolean(),
      nonce: goodNonce,
    })
    .map(({ redirect, fly, cli, challenge, method, nonce }) => {
      const q = new URLSearchParams();
      if (redirect !== null) q.set('redirect_uri', redirect);
      if (fly) q.set('fly_port', '65000');
      if (fly && cli) {
        q.set('code_challenge', challenge);
        if (method) q.set('code_challenge_method', 'S256');
        q.set('nonce', nonce);
      }
      return { method: 'GET', path: '/sky/login', query: `?${q.toString()}` };
    }),
  callback: fc
    .record({ liveState: fc.constantFrom(...LIVE_STATES), code: fc.constantFrom('fz-not-a-code', 'x') })
    .map(({ liveState, code }) => ({
      method: 'GET',
      path: '/sky/issuer/callback',
      query: `?code=${code}`,
      liveState,
    })),
  logout: fc
    .record({ method: fc.constantFrom('GET', 'POST'), who: nameArb, form: fc.boolean() })
    .map(({ method, who, form }) => ({
      method,
      path: '/sky/logout',
      contentType: form ? 'application/x-www-form-urlencoded' : null,
      body: form
        ? {
            t: 'form' as const,
            params: [['csrf_token', { t: 'csrf' as const, who }]] as [string, FormValue][],
          }
        : null,
    })),
  token: fc.oneof(
    fc
      .record({ who: nameArb, state: fc.constantFrom<'live' | 'spent'>('live', 'live', 'live', 'spent') })
      .map(({ who, state }) => ({
        method: 'POST',
        path: '/sky/token',
        contentType: 'application/x-www-form-urlencoded',
        body: {
          t: 'form' as const,
          params: [
            ['grant_type', { t: 'text' as const, text: 'refresh_token' }],
            ['refresh_token', { t: 'refresh' as const, who, state }],
          ] as [string, FormValue][],
        },
      })),
    fc
      .record({
        who: nameArb,
        state: fc.constantFrom<'live' | 'spent' | 'unknown'>('live', 'live', 'live', 'spent', 'unknown'),
        variant: fc.constantFrom<VerifierVariant>('own', 'own', 'own', 'own', 'own', ...VERIFIER_VARIANTS),
      })
      .map(({ who, state, variant }) => ({
        method: 'POST',
        path: '/sky/token',
        contentType: 'application/x-www-form-urlencoded',
        body: {
          t: 'form' as const,
          params: [
            ['grant_type', { t: 'text' as const, text: 'authorization_code' }],
            ['code', { t: 'code' as const, who, state }],
            ['code_verifier', { t: 'verifier' as const, variant }],
          ] as [string, FormValue][],
        },
      })),
  ),
  user: fc.constant({ method: 'GET', path: '/api/v1/user' }),
  teams: fc.constant({ method: 'GET', path: '/api/v1/teams' }),
  team: fc
    .record({
      method: fc.constantFrom('GET', 'PUT', 'PUT', 'DELETE'),
      team: fc.constantFrom('builders', 'main', 'fz-team', 'fz-clean'),
      auth: validConfig,
    })
    .map(({ method, team, auth }) => ({
      method,
      path: `/api/v1/teams/${team}`,
      contentType: method === 'PUT' ? 'application/json' : null,
      body: method === 'PUT' ? { t: 'json' as const, text: JSON.stringify({ auth }) } : null,
    })),
  'host-team': fc
    .record({ method: fc.constantFrom('GET', 'POST'), team: fc.constantFrom('builders', 'main', 'fz-team') })
    .map(({ method, team }) => ({ method, path: `/host/teams/${team}/pipelines` })),
  'host-admin': fc.constant({ method: 'GET', path: '/host/admin' }),
  landing: fc.constant({ method: 'GET', path: '/' }),
};
export const cleanPlans = Object.fromEntries(
  Object.entries(cleanShapes).map(([family, shape]) => [
    family,
    fc
      .tuple(shape, cleanCredentials, optional(fc.constantFrom('application/json', 'text/html')))
      .map(([sh, credentials, acceptHeader]): Plan => ({
        ...credentials,
        accept: acceptHeader,
        requestId: null,
        extra: [],
        method: sh.method,
        path: sh.path,
        query: sh.query ?? '',
        contentType: sh.contentType ?? null,
        body: sh.body ?? null,
        liveState: sh.liveState ?? 'none',
      })),
  ]),
) as Partial<Record<keyof typeof families, fc.Arbitrary<Plan>>>;

/**
 * The click on a fly page, well formed: a person's token by cookie (with the right CSRF field, someone
 * else's, garbage, the header instead, or none) or as Bearer or not at all, for the sky CLI (a good
 * challenge and nonce) or for Concourse's fly (neither).
 */
cleanPlans.fly = fc
  .record({
    who: nameArb,
    other: nameArb,
    source: fc.constantFrom<'browser' | 'cli'>('browser', 'cli'),
    via: fc.constantFrom('bearer', 'cookie', 'cookie', 'cookie', 'none'),
    csrfField: fc.constantFrom('right', 'right', 'right', 'other', 'garbage', 'header', 'missing'),
    cli: fc.boolean(),
    method: fc.boolean(),
    nonce: goodNonce,
    port: fc.constantFrom('65000', '65000', '1024', '65535', '1023', '65536'),
    accept: optional(fc.constantFrom('application/json', 'text/html')),
  })
  .map((c): Plan => {
    const token: TokenRef = { t: 'token', who: c.who, source: c.source, mutation: 'none' };
    const csrfOf = (who: Name): CsrfPlan => ({ t: 'csrf', who, source: c.source });
    const params: [string, FormValue][] = [];
    if (c.csrfField === 'right') params.push(['csrf_token', { t: 'csrf', who: c.who, source: c.source }]);
    if (c.csrfField === 'other') params.push(['csrf_token', { t: 'csrf', who: c.other, source: 'browser' }]);
    if (c.csrfField === 'garbage') params.push(['csrf_token', { t: 'text', text: 'x'.repeat(43) }]);
    params.push(['fly_port', { t: 'text', text: c.port }]);
    if (c.cli) {
      params.push(['code_challenge', { t: 'challenge' }]);
      if (c.method) params.push(['code_challenge_method', { t: 'text', text: 'S256' }]);
      params.push(['nonce', { t: 'text', text: c.nonce }]);
    }
    return {
      method: 'POST',
      path: '/sky/fly',
      query: '',
      auth: c.via === 'bearer' ? { scheme: 'Bearer', sep: ' ', value: token } : null,
      cookies:
        c.via === 'cookie' ? [{ t: 'cookie', name: 'skymarshal_auth', value: token, form: 'bearer' }] : [],
      csrf: c.csrfField === 'header' ? csrfOf(c.who) : null,
      accept: c.accept,
      contentType: 'application/x-www-form-urlencoded',
      requestId: null,
      extra: [],
      body: { t: 'form', params },
      liveState: 'none',
    };
  });

/** Team names as they go in a path: the fixtures, near misses, encodings, unicode, huge. */
export function teamParam(): fc.Arbitrary<string> {
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.constantFrom('main', 'builders', 'builders', 'fz-team', 'fz.dots', 'fz_under'),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'Main',
        'BUILDERS',
        '.hidden',
        '-x',
        'a'.repeat(64),
        'a'.repeat(65),
        'a'.repeat(3000),
        '..',
        '.',
        '%2e%2e',
        'a%2Fb',
        'a/b',
        '%2F',
        '%',
        '%zz',
        'ü',
        '%C3%BC',
        '%F0%9F%98%80',
        '__proto__',
        'constructor',
        'hasOwnProperty',
        'main%00',
        'builders%20',
        '%62uilders',
      ),
    },
    { weight: 2, arbitrary: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/) },
    { weight: 1, arbitrary: text.map((t) => encode(t)) },
  );
}
