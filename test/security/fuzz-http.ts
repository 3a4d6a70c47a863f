import { parse as parseQuery, type ParsedUrlQuery } from 'node:querystring';
import fc from 'fast-check';
import { ROLES } from '../../lib/teams/auth';
import type { FakeBitbucket } from '../../lib/testing';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../lib/tokens';
import { challengeOf, confirmationCode, newNonce, newVerifier } from '../../lib/tokens/pkce';
import { Vault } from '../../lib/tokens/vault';
import { Browser } from '../harness/browser';
import { approveFly, cliLoginAs, followFlyLogin, loginAs, tokenRequest } from '../harness/login';
import { encode, exchange, headerOf, wellFormed, wire, type Answer } from './raw-http';

/**
 * The HTTP fuzzing of test/security/fuzz.test.ts: the arena (a node and the people logged in to it),
 * the request plans fast-check generates for every route, and the oracle that judges each answer:
 * never a 5xx (but a 503 of the fly click), never a grant to someone whose valid token was not in the
 * request (no fly code or token without a credential and, for a cookie, its CSRF value; no token
 * from /sky/token but for a live refresh token, or a live code with its own verifier), the documented
 * error shapes, nothing from the request echoed unescaped in HTML, and the pending login's sealed
 * cookie refused whenever it is tampered with, expired, replayed, swapped or another key's.
 */

// ---------------------------------------------------------------------------------------------------
// The arena: a node, its fake Bitbucket, the people logged in to it, and what the test knows about it.
// ---------------------------------------------------------------------------------------------------

export const NAMES = ['alice', 'bob', 'carol'] as const;
export type Name = (typeof NAMES)[number];

interface Credential {
  token: string;
  csrf: string;
}
interface Person {
  sub: string;
  displayName: string;
  browser: Credential & { session: string };
  cli: Credential & { refresh: string };
}

/** bob owns it, carol (workspace acme) views it; the fuzz may change it, and the test then puts it back. */
const BUILDERS = { owner: { users: ['bob'] }, viewer: { groups: ['acme'] } };
/**
 * Principals of bob and carol: fuzzed team configs never name them, so the only team that gives them
 * anything is builders, and a grant to them anywhere else is a wrong grant.
 */
const THEIRS = /bob|carol|b0b0|ca401|acme|widgets/i;

const claimsOf = (token: string): Record<string, unknown> => {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
  } catch {
    return {};
  }
};

/** An authorization code of a sky CLI login, and the PKCE verifier its challenge was made from. */
export interface MintedCode {
  who: Name;
  code: string;
  verifier: string;
}

export class Arena {
  readonly people = {} as Record<Name, Person>;
  /** Tokens this node revoked (logout), newest last. */
  readonly dead = { alice: [], bob: [], carol: [] } as Record<Name, string[]>;
  /** Forged tokens that look like the person's: alg none, and a payload changed under the signature. */
  readonly forged = { alice: [], bob: [], carol: [] } as Record<Name, string[]>;
  /** Refresh tokens already rotated away (presenting one again is reuse), with their owner. */
  readonly spent: { who: Name; token: string }[] = [];
  /** Authorization codes presented once already (spent, whatever the verifier was), with their own verifier. */
  readonly spentCodes: MintedCode[] = [];
  readonly port: number;
  /** The node's signing key: the test seals login cookies with it (an expired one, say). */
  readonly key: SigningKey;

  constructor(
    readonly name: string,
    readonly url: string,
    readonly fake: FakeBitbucket,
    readonly hostRoutes: boolean,
    signingKeyPem: string,
  ) {
    this.port = Number(new URL(url).port);
    this.key = loadSigningKey(signingKeyPem);
  }

  async setUp(): Promise<void> {
    // alice (admin) first: bob and carol have no team until she puts builders.
    await this.loginBrowser('alice');
    await this.loginCli('alice');
    await this.restoreBuilders();
    for (const who of ['bob', 'carol'] as const) {
      await this.loginBrowser(who);
      await this.loginCli(who);
    }
    for (const who of NAMES) {
      // A token of each person that the node has revoked.
      const leaving = await loginAs(this.url, this.fake, who);
      const res = await fetch(`${this.url}/sky/logout`, { method: 'POST', headers: leaving.bearer });
      if (res.status !== 204) throw new Error(`logout of ${who} answered ${res.status}`);
      this.dead[who].push(leaving.token);
      const [h, p, s] = this.people[who].browser.token.split('.') as [string, string, string];
      const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      // Made admin under the original signature; the changed jti makes it differ even for alice.
      const claims = claimsOf(`.${p}`);
      const admin = Buffer.from(
        JSON.stringify({
          ...claims,
          is_admin: true,
          teams: { main: ['owner'] },
          jti: `${String(claims['jti'])}x`,
        }),
      );
      this.forged[who].push(`${none}.${p}.`, `${h}.${admin.toString('base64url')}.${s}`);
      // A code spent by a redemption with the wrong verifier: its own verifier must not revive it.
      const code = await this.mintCode(who);
      const wrong = await tokenRequest(this.url, {
        grant_type: 'authorization_code',
        code: code.code,
        code_verifier: newVerifier(),
      });
      if (wrong.status !== 400 || wrong.body['error'] !== 'invalid_grant') {
        throw new Error(
          `a code with the wrong verifier answered ${wrong.status} ${JSON.stringify(wrong.body)}`,
        );
      }
      this.spentCodes.push(code);
    }
  }

  /**
   * A live authorization code of `who`, through the real flow of a browser that is logged in: the fly
   * page of a sky CLI login (GET /sky/login with the CLI's challenge), then the click (POST /sky/fly).
   */
  async mintCode(who: Name): Promise<MintedCode> {
    const verifier = newVerifier();
    const query = new URLSearchParams({
      fly_port: '65000',
      code_challenge: challengeOf(verifier),
      code_challenge_method: 'S256',
      nonce: newNonce(),
    });
    const browser = new Browser();
    browser.jar.set('skymarshal_auth', encodeURIComponent(`bearer ${this.people[who].browser.token}`));
    const page = await followFlyLogin(`${this.url}/sky/login?${query.toString()}`, this.fake, who, browser);
    const delivery = await approveFly(page);
    if (delivery.kind !== 'code') throw new Error(`the CLI login of ${who} delivered a ${delivery.kind}`);
    return { who, code: delivery.value, verifier };
  }

  async loginBrowser(who: Name): Promise<void> {
    const got = await loginAs(this.url, this.fake, who);
    const claims = claimsOf(got.token);
    const previous = this.people[who] as Person | undefined;
    this.people[who] = {
      sub: String(claims['sub']),
      displayName: String(claims['name']),
      browser: { token: got.token, csrf: got.csrf, session: got.browser.jar.get('sky_session') ?? '' },
      cli: previous?.cli ?? { token: got.token, csrf: got.csrf, refresh: '' },
    };
  }

  async loginCli(who: Name): Promise<void> {
    const got = await cliLoginAs(this.url, this.fake, who);
    this.people[who].cli = {
      token: got.token,
      csrf: String(claimsOf(got.token)['csrf']),
      refresh: got.refreshToken,
    };
  }

  /** builders as BUILDERS, written through the API as the admin, so this node's cache knows at once. */
  async restoreBuilders(): Promise<void> {
    const res = await fetch(`${this.url}/api/v1/teams/builders`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.people.alice.cli.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ auth: BUILDERS }),
    });
    if (res.status !== 200 && res.status !== 201)
      throw new Error(`could not restore builders: ${res.status}`);
  }

  /** Whether the node refuses a token now (revoked), so only tokens it really refuses count as dead. */
  async refuses(token: string): Promise<boolean> {
    const res = await fetch(`${this.url}/api/v1/user`, { headers: { authorization: `Bearer ${token}` } });
    return res.status === 401;
  }

  /** The node still answers: the health check after every property. */
  async healthy(): Promise<boolean> {
    const res = await fetch(`${this.url}/sky/issuer/keys`).catch(() => null);
    if (!res || res.status !== 200) return false;
    const body = (await res.json()) as { keys?: unknown[] };
    return Array.isArray(body.keys) && body.keys.length > 0;
  }
}

// ---------------------------------------------------------------------------------------------------
// Plans: what the arbitraries generate. Credentials are named, not embedded, and resolved at send time
// against the arena's current people (a logout in one run replaces a token for the next).
// ---------------------------------------------------------------------------------------------------

type Source = 'browser' | 'cli' | 'dead' | 'forged';
type Mutation = 'none' | 'truncate' | 'flip' | 'upper' | 'extra-segment' | 'strip-signature';
interface TokenRef {
  t: 'token';
  who: Name;
  source: Source;
  mutation: Mutation;
}
interface Text {
  t: 'text';
  text: string;
}
type Value = TokenRef | Text;
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
type VerifierVariant = 'own' | 'other' | 'near' | 'challenge' | 'short' | 'long' | 'upper';
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

type Kind =
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
type LiveState =
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
interface Sent {
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

/** What a request needs prepared before it is sent: a started login, freshly minted codes. */
interface Prepared {
  login: PendingLogin | null;
  /** Live codes, one for each `{ t: 'code', state: 'live' }` of the body, in order. */
  codes: MintedCode[];
}

function materialise(arena: Arena, plan: Plan, prepared: Prepared): { request: Buffer; sent: Sent } {
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
const SERVES: Record<Kind, string[]> = {
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
const RATE_LIMITED = new Set<Kind>(['callback', 'token']);
const OAUTH_ERRORS = new Set([
  'invalid_request',
  'invalid_grant',
  'unsupported_grant_type',
  'temporarily_unavailable',
  'server_error',
  'invalid_client',
  'unauthorized_client',
]);

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
function deliveryOf(body: string): { kind: 'code' | 'token'; value: string } | null {
  const m = /<textarea id="handover"[^>]* data-kind="(code|token)">([^<]*)<\/textarea>/.exec(body);
  return m ? { kind: m[1] as 'code' | 'token', value: m[2] ?? '' } : null;
}

/**
 * The one grant a token request may get: a live refresh token under grant_type=refresh_token, or a live
 * code with its own verifier under authorization_code (each parameter once). Null: nothing is due.
 */
function grantOf(s: Sent): { kind: 'refresh' | 'code'; who: Name; code?: string } | null {
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
  tampered: 'unknown or already used login state',
  'no-cookie': 'unknown or already used login state',
  'cookie-tampered': 'the login state cannot be read',
  foreign: 'the login state cannot be read',
  swapped: 'the login state cannot be read',
  expired: 'login state expired',
  replayed: 'login state already used',
};

const EPOCH = 'Expires=Thu, 01 Jan 1970 00:00:00 GMT';

/** Everything wrong with one answer; empty when it is one sky may give. Grants are judged on `arena`'s state. */
function problemsOf(arena: Arena, s: Sent, a: Answer): string[] {
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
        if (variant === 'live' && body.includes('The login state is not valid'))
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

// ---------------------------------------------------------------------------------------------------
// Running a plan, and keeping the arena's model current.
// ---------------------------------------------------------------------------------------------------

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

/** A login started on a fresh browser: the state Bitbucket would send back, and its sealed cookie. */
async function startedLogin(arena: Arena): Promise<{ state: string; name: string; value: string }> {
  const res = await fetch(`${arena.url}/sky/login`, { redirect: 'manual' });
  await res.arrayBuffer();
  const state = new URL(res.headers.get('location') ?? '').searchParams.get('state') ?? '';
  const pair = (res.headers.getSetCookie().find((c) => c.startsWith('sky_login_')) ?? '').split(';')[0] ?? '';
  const eq = pair.indexOf('=');
  if (!state || eq < 0) throw new Error(`${arena.name}: GET /sky/login gave no state or no login cookie`);
  return { state, name: pair.slice(0, eq), value: pair.slice(eq + 1) };
}

/** A signing key no node of the fuzz has: what another deployment would seal with. */
let foreignKey: SigningKey | undefined;

/** The content of a login cookie sealed again, by `key`, after `change`. */
function resealed(
  arena: Arena,
  name: string,
  value: string,
  key: SigningKey,
  change = (_: Record<string, unknown>) => {},
): string {
  const context = `login-state ${name}`;
  const pending = JSON.parse(
    new Vault(arena.key, 'login-state').open(decodeURIComponent(value), context),
  ) as Record<string, unknown>;
  change(pending);
  return encodeURIComponent(new Vault(key, 'login-state').seal(JSON.stringify(pending), context));
}

async function pendingLogin(arena: Arena, variant: LiveState): Promise<PendingLogin> {
  const { state, name, value } = await startedLogin(arena);
  const login = { variant, state, sentState: state, name, cookie: value as string | null };
  switch (variant) {
    case 'tampered':
      login.sentState = `${state.slice(0, -2)}${state.endsWith('xx') ? 'yy' : 'xx'}`;
      break;
    case 'cookie-tampered': {
      const raw = decodeURIComponent(value);
      const i = raw.length - 5;
      login.cookie = encodeURIComponent(`${raw.slice(0, i)}${raw[i] === 'A' ? 'B' : 'A'}${raw.slice(i + 1)}`);
      break;
    }
    case 'expired':
      login.cookie = resealed(arena, name, value, arena.key, (p) => {
        p['e'] = Date.now() - 1_000;
      });
      break;
    case 'foreign':
      login.cookie = resealed(arena, name, value, (foreignKey ??= generateSigningKey()));
      break;
    case 'swapped':
      // Another login's cookie under this login's name: it opens under neither.
      login.cookie = (await startedLogin(arena)).value;
      break;
    case 'replayed': {
      // Used once already (Bitbucket's code was refused, but the state is spent on every node).
      const first = await fetch(
        `${arena.url}/sky/issuer/callback?code=fz-first-use&state=${encodeURIComponent(state)}`,
        { headers: { cookie: `${name}=${value}` }, redirect: 'manual' },
      );
      await first.arrayBuffer();
      if (first.status !== 400)
        throw new Error(`${arena.name}: a first use of a login answered ${first.status}`);
      break;
    }
    case 'no-cookie':
      login.cookie = null;
      break;
    default:
      break;
  }
  return login;
}

async function prepare(arena: Arena, plan: Plan): Promise<Prepared> {
  const login = plan.liveState === 'none' ? null : await pendingLogin(arena, plan.liveState);
  const codes: MintedCode[] = [];
  if (plan.body?.t === 'form') {
    for (const [, v] of plan.body.params) {
      if (v.t === 'code' && v.state === 'live') codes.push(await arena.mintCode(v.who));
    }
  }
  return { login, codes };
}

/** Answers seen per arena, route, method and status: SKY_FUZZ_STATS=1 prints them, to judge the generators. */
export const outcomes = new Map<string, number>();

export async function send(arena: Arena, plan: Plan): Promise<void> {
  const prepared = await prepare(arena, plan);
  const { request, sent } = materialise(arena, plan, prepared);
  const answer = await exchange(arena.port, plan.method, request);
  const what =
    sent.codes.length > 0
      ? `${sent.kind}(code)`
      : sent.login
        ? `${sent.kind}(${sent.login.variant})`
        : sent.kind;
  const key = `${arena.name.slice(0, 4)} ${what} ${plan.method} ${answer.status}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  const problems = problemsOf(arena, sent, answer);
  if (problems.length > 0) {
    throw new Error(
      `${problems.join('; ')}\n  ${arena.name}: ${plan.method} ${plan.path.slice(0, 100)}${plan.query.slice(0, 100)} → ${answer.status}\n  body: ${answer.body.slice(0, 300)}`,
    );
  }
  await follow(arena, sent, answer);
}

/** What a successful request changed: revoked tokens, rotated refresh tokens, changed teams. */
async function follow(arena: Arena, s: Sent, a: Answer): Promise<void> {
  const loggedOut = a.status === 204 || a.status === 303;
  if (s.kind === 'logout' && ['GET', 'HEAD', 'POST'].includes(s.plan.method) && loggedOut) {
    // The presented token is revoked with its refresh family, and a session sent along is destroyed.
    for (const p of s.placed) {
      if (await arena.refuses(p.token)) arena.dead[p.who].push(p.token);
      if (p.source === 'browser') await arena.loginBrowser(p.who);
      else await arena.loginCli(p.who);
    }
    for (const who of s.sessions) await arena.loginBrowser(who);
  }
  const fail = (what: string): never => {
    throw new Error(`${arena.name}: ${what}`);
  };
  if (s.kind === 'logout' && s.plan.method === 'GET' && a.status === 200) {
    // The page only asks: the token that asked still works.
    for (const p of s.placed) {
      if (p.via === 'cookie' && (await arena.refuses(p.token))) fail('a cookie-only GET /sky/logout revoked');
    }
  }
  if (s.kind === 'token') {
    const grant = grantOf(s);
    const granted = jsonOf(a) as { access_token?: string; refresh_token?: string } | undefined;
    if (a.status === 200 && grant?.kind === 'refresh' && granted?.access_token && granted.refresh_token) {
      arena.spent.push({ who: grant.who, token: arena.people[grant.who].cli.refresh });
      arena.people[grant.who].cli = {
        token: granted.access_token,
        csrf: String(claimsOf(granted.access_token)['csrf']),
        refresh: granted.refresh_token,
      };
    } else if (s.refresh.length > 0) {
      // A refused redemption may have ended the family (reuse of a spent one): start a new one.
      for (const who of new Set(s.refresh.map((r) => r.who))) await arena.loginCli(who);
    }
    // Every live code the request carried is spent now: by its redemption, or here by a wrong verifier.
    for (const c of s.codes) {
      if (c.state !== 'live') continue;
      const redeemed = a.status === 200 && grant?.kind === 'code' && grant.code === c.code;
      const again = await tokenRequest(arena.url, {
        grant_type: 'authorization_code',
        code: c.code,
        code_verifier: redeemed ? c.verifier : newVerifier(),
      });
      if (again.status !== 400 || again.body['error'] !== 'invalid_grant') {
        fail(`a code presented again (${redeemed ? 'redeemed' : 'maybe unused'}) answered ${again.status}`);
      }
      arena.spentCodes.push({ who: c.who, code: c.code, verifier: c.verifier });
    }
  }
  if (s.kind === 'fly' && a.status === 200) {
    const delivery = deliveryOf(a.body);
    const subs = s.placed.map((p) => arena.people[p.who].sub);
    if (delivery?.kind === 'code' && s.fly && a.body.includes(s.fly.challenge)) {
      // The code is the person's, once, and only with the verifier of its challenge.
      const form = { grant_type: 'authorization_code', code: delivery.value, code_verifier: s.fly.verifier };
      const redeemed = await tokenRequest(arena.url, form);
      const sub = claimsOf(String(redeemed.body['access_token'] ?? ''))['sub'];
      if (redeemed.status !== 200 || !subs.includes(String(sub)))
        fail(`a delivered code redeemed: ${redeemed.status} for ${String(sub)}`);
      if ((await tokenRequest(arena.url, form)).status !== 400) fail('a delivered code was redeemed twice');
    }
    if (delivery?.kind === 'token') {
      const res = await fetch(`${arena.url}/api/v1/user`, {
        headers: { authorization: `Bearer ${delivery.value.replace(/^bearer /, '')}` },
      });
      const user = (await res.json()) as { sub?: unknown };
      if (res.status !== 200 || !subs.includes(String(user.sub)))
        fail(`a delivered fly token: ${res.status}`);
    }
  }
  if (s.kind === 'team' && s.team !== undefined && a.status >= 200 && a.status < 300) {
    if (s.plan.method === 'PUT') {
      // What was saved reads back as saved: the store re-validates every config it reads.
      const res = await fetch(`${arena.url}/api/v1/teams/${encodeURIComponent(s.team)}`, {
        headers: { authorization: `Bearer ${arena.people.alice.cli.token}` },
      });
      const saved = jsonOf(a);
      const read = (await res.json()) as unknown;
      if (res.status !== 200 || JSON.stringify(read) !== JSON.stringify(saved)) {
        throw new Error(
          `${arena.name}: team ${s.team} was saved (${a.status}) but reads back ${res.status} ${JSON.stringify(read).slice(0, 200)}`,
        );
      }
    }
    if (s.team === 'builders' && (s.plan.method === 'PUT' || s.plan.method === 'DELETE')) {
      await arena.restoreBuilders();
    }
  }
}
