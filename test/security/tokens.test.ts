import {
  constants,
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Request, Response } from 'express';
import { requiresTeamRole } from '../../lib/http/guards';
import { startWebNode, type WebNode } from '../../lib/server';
import { FakeBitbucket } from '../../lib/testing';
import { recordFigures } from '../harness/figures';
import { freePort } from '../harness/global-setup';
import { cliLoginAs, loginAs, tokenRequest, type LoggedIn } from '../harness/login';
import { startNode, type TestNode } from '../harness/node';

/**
 * The token battery of the hardening issue, through real HTTP: every forged, broken, expired or revoked
 * token is `401 not authorized` on a guarded host route and on /api/v1/user, as a Bearer header and as a
 * cookie, and the 401 to a cookie request clears the cookies. Valid controls pass in the same test, so
 * the battery cannot pass by refusing everything.
 */

const HOST_ROUTE = '/host/teams/builders/pipelines';
const ROUTES = ['/api/v1/user', HOST_ROUTE];
const NOT_AUTHORIZED = { error: 'not_authorized', message: 'not authorized' };
const EPOCH = 'Expires=Thu, 01 Jan 1970 00:00:00 GMT';

const pem = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }).toString();
const nodeKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

let fake: FakeBitbucket;
let node: TestNode;
let alice: LoggedIn; // admin: passes the host route's viewer check
let bob: LoggedIn; // owner of builders
let kid: string;
let jwk: JsonWebKey;
let requests = 0;
/** Inputs tried, and the tests that finished: figures are recorded only when all of them passed. */
const battery = { tokens: 0, passed: 0 };
const TESTS = 5;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({
    fake,
    options: { signingKey: pem(nodeKey), rateLimit: { perMinute: 0 } },
    routes: (app) => {
      app.get('/host/teams/:team/pipelines', requiresTeamRole('viewer'), (_req: Request, res: Response) => {
        res.json([]);
      });
    },
  });
  await node.putTeam('builders', { owner: { users: ['bob'] } });
  alice = await loginAs(node.url, fake, 'alice');
  bob = await loginAs(node.url, fake, 'bob');
  const keys = (await (await fetch(`${node.url}/sky/issuer/keys`)).json()) as { keys: JsonWebKey[] };
  const first = keys.keys[0];
  if (!first || typeof first['kid'] !== 'string') throw new Error('no key in the JWKS');
  jwk = first;
  kid = first['kid'];
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

// --- building tokens -------------------------------------------------------------------------------

const b64 = (value: unknown): string =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const parts = (token: string): [string, string, string] => token.split('.') as [string, string, string];
const payloadOf = (token: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(parts(token)[1], 'base64url').toString('utf8')) as Record<string, unknown>;

type Signer = (input: Buffer) => Buffer;
const rsa =
  (key: KeyObject, digest = 'RSA-SHA256'): Signer =>
  (input) =>
    sign(digest, input, key);
const pss: Signer = (input) =>
  sign('sha256', input, { key: nodeKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
const hmac =
  (secret: string | Buffer): Signer =>
  (input) =>
    createHmac('sha256', secret).update(input).digest();

/** A compact JWS over any header and payload (objects, or raw JSON text), signed by `signer`. */
function jws(header: unknown, payload: unknown, signer: Signer = rsa(nodeKey)): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${signer(Buffer.from(input)).toString('base64url')}`;
}

/** A base64url segment that decodes to the same bytes but is not canonical (spare bits set), or null. */
function nonCanonical(segment: string): string | null {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const bytes = Buffer.from(segment, 'base64url');
  for (const c of alphabet) {
    const variant = segment.slice(0, -1) + c;
    if (variant !== segment && Buffer.from(variant, 'base64url').equals(bytes)) return variant;
  }
  return null;
}

function flipBit(segment: string, bit: number): string {
  const bytes = Buffer.from(segment, 'base64url');
  bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) ^ (1 << (bit & 7));
  return bytes.toString('base64url');
}

// --- sending ---------------------------------------------------------------------------------------

interface Answer {
  status: number;
  body: unknown;
  setCookies: string[];
}

async function call(route: string, headers: Record<string, string>, base = node.url): Promise<Answer> {
  requests++;
  const res = await fetch(`${base}${route}`, { headers: { accept: 'application/json', ...headers } });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text, and the assertion on the body says so
  }
  return { status: res.status, body, setCookies: res.headers.getSetCookie() };
}

const asCookie = (token: string): string => `skymarshal_auth=${encodeURIComponent(`bearer ${token}`)}`;

/** The names a Set-Cookie list expires (empty value, Expires in 1970). */
const expired = (setCookies: string[]): Set<string> =>
  new Set(
    setCookies.filter((c) => /^[^=]+=;/.test(c) && c.includes(EPOCH)).map((c) => c.slice(0, c.indexOf('='))),
  );

/** Cookie names in a Cookie header that are sky's auth cookies, which a 401 must expire. */
const authCookieNames = (cookie: string): string[] =>
  cookie
    .split(';')
    .map((c) => c.slice(0, c.indexOf('=')).trim())
    .filter((name) => /^skymarshal_auth(0|[1-9]\d?)?$/.test(name));

/**
 * Sends `how` on every route and returns what was wrong (empty: every answer was the one 401, and a
 * cookie request had its cookies cleared).
 */
async function refusedEverywhere(
  label: string,
  how: { authorization: string } | { cookie: string },
  routes = ROUTES,
  base = node.url,
): Promise<string[]> {
  const problems: string[] = [];
  for (const route of routes) {
    const answer = await call(route, how, base);
    const where = `${label} on ${route} (${'cookie' in how ? 'cookie' : 'Bearer'})`;
    if (answer.status !== 401 || JSON.stringify(answer.body) !== JSON.stringify(NOT_AUTHORIZED)) {
      problems.push(`${where}: ${answer.status} ${JSON.stringify(answer.body).slice(0, 200)}`);
      continue;
    }
    if ('cookie' in how) {
      const cleared = expired(answer.setCookies);
      const needed = [...new Set([...authCookieNames(how.cookie), 'skymarshal_auth', 'skymarshal_csrf'])];
      const kept = needed.filter((name) => !cleared.has(name));
      if (kept.length > 0) problems.push(`${where}: 401 did not clear ${kept.join(', ')}`);
    } else if (answer.setCookies.length > 0) {
      problems.push(`${where}: a Bearer 401 set cookies ${answer.setCookies.join(' | ')}`);
    }
  }
  return problems;
}

/** Both forms of a token, on both routes. */
async function tokenRefused(label: string, token: string): Promise<string[]> {
  return [
    ...(await refusedEverywhere(label, { authorization: `Bearer ${token}` })),
    ...(await refusedEverywhere(label, { cookie: asCookie(token) })),
  ];
}

async function accepted(how: Record<string, string>, routes = ROUTES, base = node.url): Promise<number[]> {
  const statuses: number[] = [];
  for (const route of routes) statuses.push((await call(route, how, base)).status);
  return statuses;
}

// --- the battery -----------------------------------------------------------------------------------

test('every forged or broken token is 401 not authorized, as a Bearer header and as a cookie', async () => {
  const now = Math.floor(Date.now() / 1000);
  const good = alice.token;
  const [h, p, s] = parts(good);
  const claims = payloadOf(good);
  const header = { alg: 'RS256', typ: 'JWT', kid };
  const fresh = { ...claims, iat: now, exp: now + 3600 };
  const publicPem = createPublicKey({ key: jwk, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();
  const publicDer = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
  const pkcs1Pem = createPublicKey({ key: jwk, format: 'jwk' })
    .export({ type: 'pkcs1', format: 'pem' })
    .toString();
  const otherJwk = createPublicKey(otherKey).export({ format: 'jwk' });

  // Controls: the real token and one signed here with the node's key pass, so a refusal below is the defect.
  expect(typeof claims['sid']).toBe('string');
  expect(claims['sid']).not.toBe('');
  const control = jws(header, fresh);
  for (const token of [good, control]) {
    expect(await accepted({ authorization: `Bearer ${token}` })).toEqual([200, 200]);
    expect(await accepted({ cookie: asCookie(token) })).toEqual([200, 200]);
  }

  const bobToken = bob.token;
  const [bh, bp, bs] = parts(bobToken);
  const bobClaims = payloadOf(bobToken);
  const canonicalSig = nonCanonical(s);
  const canonicalPayload = nonCanonical(p);
  const canonicalHeader = nonCanonical(h);

  const cases: [string, string][] = [
    // alg confusion
    ['alg none, no signature', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(fresh)}.`],
    ['alg none, with kid, no signature', `${b64({ alg: 'none', kid })}.${b64(fresh)}.`],
    ['alg none, with the original signature', `${b64({ alg: 'none', kid })}.${p}.${s}`],
    ['alg None', `${b64({ ...header, alg: 'None' })}.${p}.${s}`],
    ['alg NONE, no signature', `${b64({ ...header, alg: 'NONE' })}.${p}.`],
    ['HS256 signed with the public key (SPKI PEM)', jws({ ...header, alg: 'HS256' }, fresh, hmac(publicPem))],
    [
      'HS256 signed with the public key (PKCS#1 PEM)',
      jws({ ...header, alg: 'HS256' }, fresh, hmac(pkcs1Pem)),
    ],
    ['HS256 signed with the public key (DER)', jws({ ...header, alg: 'HS256' }, fresh, hmac(publicDer))],
    ['HS256 signed with the JWKS entry', jws({ ...header, alg: 'HS256' }, fresh, hmac(JSON.stringify(jwk)))],
    ['HS256 without kid, public key PEM', jws({ alg: 'HS256' }, fresh, hmac(publicPem))],
    [
      'RS512 header, signed with RSA-SHA512 by the node key',
      jws({ ...header, alg: 'RS512' }, fresh, rsa(nodeKey, 'RSA-SHA512')),
    ],
    ['RS512 header over an RS256 signature', jws({ ...header, alg: 'RS512' }, fresh)],
    ['PS256 header, signed with RSA-PSS by the node key', jws({ ...header, alg: 'PS256' }, fresh, pss)],
    ['alg missing', jws({ typ: 'JWT', kid }, fresh)],
    ['alg a list', jws({ ...header, alg: ['RS256'] }, fresh)],
    ['alg with a trailing space', jws({ ...header, alg: 'RS256 ' }, fresh)],
    ['alg lower-case', jws({ ...header, alg: 'rs256' }, fresh)],
    // key selection
    ['unknown kid, signed by the node key', jws({ ...header, kid: 'not-a-kid' }, fresh)],
    ['kid of a path', jws({ ...header, kid: '../../../dev/null' }, fresh)],
    ['missing kid', jws({ alg: 'RS256', typ: 'JWT' }, fresh)],
    ['kid null', jws({ ...header, kid: null }, fresh)],
    ['kid a list', jws({ ...header, kid: [kid] }, fresh)],
    ['same kid, signed by another RSA key', jws(header, fresh, rsa(otherKey))],
    ['embedded jwk of another key, same kid', jws({ ...header, jwk: otherJwk }, fresh, rsa(otherKey))],
    [
      'jku pointing elsewhere, signed by another key',
      jws({ ...header, jku: 'http://127.0.0.1:1/keys' }, fresh, rsa(otherKey)),
    ],
    // time
    ['expired beyond the 60 s leeway', jws(header, { ...claims, iat: now - 7200, exp: now - 90 })],
    ['expired long ago', jws(header, { ...claims, iat: 1_000_000, exp: 1_003_600 })],
    ['issued in the future', jws(header, { ...claims, iat: now + 600, exp: now + 4200 })],
    ['nbf in the future', jws(header, { ...fresh, nbf: now + 600 })],
    ['nbf not a number', jws(header, { ...fresh, nbf: 'now' })],
    ['exp a string', jws(header, { ...fresh, exp: String(now + 3600) })],
    ['exp beyond JSON numbers', jws(header, `${JSON.stringify(fresh).slice(0, -1)},"exp":1e400}`)],
    ['exp missing', jws(header, { ...fresh, exp: undefined })],
    // issuer and audience
    ['wrong iss', jws(header, { ...fresh, iss: 'https://evil.example.com' })],
    ['iss with a trailing slash', jws(header, { ...fresh, iss: `${node.externalUrl}/` })],
    ['wrong aud', jws(header, { ...fresh, aud: 'concourse' })],
    ['aud list without ours', jws(header, { ...fresh, aud: ['concourse', 'other'] })],
    ['aud missing', jws(header, { ...fresh, aud: undefined })],
    // claims of the wrong shape, correctly signed
    ['is_admin a string', jws(header, { ...fresh, is_admin: 'true' })],
    ['teams a list', jws(header, { ...fresh, teams: [['main', 'owner']] })],
    ['sub empty', jws(header, { ...fresh, sub: '' })],
    // the login family (sid): required, a non-empty string
    ['sid missing', jws(header, { ...fresh, sid: undefined })],
    ['sid empty', jws(header, { ...fresh, sid: '' })],
    ['sid a number', jws(header, { ...fresh, sid: 42 })],
    ['sid zero', jws(header, { ...fresh, sid: 0 })],
    ['sid null', jws(header, { ...fresh, sid: null })],
    ['sid true', jws(header, { ...fresh, sid: true })],
    ['sid a list', jws(header, { ...fresh, sid: [claims['sid']] })],
    ['sid an object', jws(header, { ...fresh, sid: { id: claims['sid'] } })],
    ['sid twice, the last one a number', jws(header, `${JSON.stringify(fresh).slice(0, -1)},"sid":7}`)],
    ['crit header', jws({ ...header, crit: ['exp'] }, fresh)],
    ['crit header, empty list', jws({ ...header, crit: [] }, fresh)],
    // structure
    ['truncated header', `${h.slice(0, -1)}.${p}.${s}`],
    ['truncated payload', `${h}.${p.slice(0, -1)}.${s}`],
    ['truncated signature', `${h}.${p}.${s.slice(0, -1)}`],
    ['header segment missing', `.${p}.${s}`],
    ['payload segment missing', `${h}..${s}`],
    ['signature segment empty', `${h}.${p}.`],
    ['two segments', `${h}.${p}`],
    ['one segment', h],
    ['cut in half', good.slice(0, Math.floor(good.length / 2))],
    ['extra segment', `${good}.${s}`],
    ['extra empty segment', `${good}.`],
    ['header not JSON', jws('{"alg":"RS256",', fresh)],
    ['header a JSON list', jws([header], fresh)],
    ['payload a JSON list', jws(header, [fresh])],
    ['payload a JSON string', jws(header, JSON.stringify('alice'))],
    ['payload JSON null', jws(header, 'null')],
    ['payload a number', jws(header, '42')],
    ['payload not JSON', jws(header, 'alice')],
    ['padding in the signature', `${good}==`],
    ['standard base64 characters', `${h}.${p}.${s.replace(/-/g, '+').replace(/_/g, '/')}+/`],
    ['a stray character in the signature', `${good}A`],
    // tampering with a real token
    ['is_admin flipped on bob, original signature', `${bh}.${b64({ ...bobClaims, is_admin: true })}.${bs}`],
    [
      'teams changed on bob, original signature',
      `${bh}.${b64({ ...bobClaims, teams: { main: ['owner'] } })}.${bs}`,
    ],
    ['groups changed on bob, original signature', `${bh}.${b64({ ...bobClaims, groups: ['acme'] })}.${bs}`],
    ['sub changed to alice, original signature', `${bh}.${b64({ ...bobClaims, sub: claims['sub'] })}.${bs}`],
    ["bob's payload under alice's signature", `${h}.${bp}.${s}`],
    ['signature: one bit flipped (first byte)', `${h}.${p}.${flipBit(s, 0)}`],
    ['signature: one bit flipped (middle)', `${h}.${p}.${flipBit(s, 1024)}`],
    ['signature: one bit flipped (last byte)', `${h}.${p}.${flipBit(s, 2047)}`],
  ];
  if (canonicalHeader) cases.push(['non-canonical base64url header', `${canonicalHeader}.${p}.${s}`]);
  if (canonicalPayload) cases.push(['non-canonical base64url payload', `${h}.${canonicalPayload}.${s}`]);
  if (canonicalSig) cases.push(['non-canonical base64url signature', `${h}.${p}.${canonicalSig}`]);
  // The signature of 256 bytes always has spare bits, so the non-canonical case above is never skipped.
  expect(canonicalSig).not.toBeNull();

  // A token this node revoked at logout.
  const leaving = await loginAs(node.url, fake, 'bob');
  const logout = await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: leaving.bearer });
  expect(logout.status).toBe(204);
  cases.push(['revoked at logout', leaving.token]);

  const problems: string[] = [];
  for (const [label, token] of cases) problems.push(...(await tokenRefused(label, token)));
  expect(problems).toEqual([]);

  // The controls still pass after the battery: nothing above broke the node or its caches.
  expect(await accepted({ authorization: `Bearer ${good}` })).toEqual([200, 200]);

  battery.tokens += cases.length;
  battery.passed++;
});

test('Authorization headers that are not one Bearer token are 401', async () => {
  const token = alice.token;
  const headers = [
    `Basic ${Buffer.from(`alice:${token}`).toString('base64')}`,
    `Token ${token}`,
    `Bearer`,
    `Bearer `,
    `Bearer  ${token}`,
    `Bearer ${token} ${token}`,
    `Bearer ${token},Bearer ${token}`,
    `Bearer bearer ${token}`,
    `Bearer "${token}"`,
    `Bearer ${token};`,
    token,
    `Bearer\t${token}`,
    `Bearer%20${token}`,
  ];
  const problems: string[] = [];
  for (const authorization of headers) {
    problems.push(
      ...(await refusedEverywhere(JSON.stringify(authorization.slice(0, 30)), { authorization })),
    );
  }
  expect(problems).toEqual([]);
  // The scheme is case-insensitive (SPEC §7.2): these are the same good token.
  expect(await accepted({ authorization: `bearer ${token}` })).toEqual([200, 200]);
  expect(await accepted({ authorization: `BEARER ${token}` })).toEqual([200, 200]);
  battery.tokens += headers.length;
  battery.passed++;
});

test('split cookies that do not join into the token are 401 and cleared', async () => {
  const value = encodeURIComponent(`bearer ${alice.token}`);
  const third = Math.ceil(value.length / 3);
  const [c0, c1, c2] = [value.slice(0, third), value.slice(third, 2 * third), value.slice(2 * third)];
  const chunks = (...values: [number | string, string][]): string =>
    values.map(([i, v]) => `skymarshal_auth${i}=${v}`).join('; ');

  // Controls: the chunks joined in numeric order, whatever order the header lists them in (SPEC §7.2).
  expect(await accepted({ cookie: chunks([0, c0], [1, c1], [2, c2]) })).toEqual([200, 200]);
  expect(await accepted({ cookie: chunks([2, c2], [0, c0], [1, c1]) })).toEqual([200, 200]);

  const bare = encodeURIComponent(alice.token);
  const cookieCases: [string, string][] = [
    ['chunks numbered out of order', chunks([0, c1], [1, c2], [2, c0])],
    ['chunks with a gap (no 1)', chunks([0, c0], [2, c2])],
    ['chunks with a gap (0, 1, 3)', chunks([0, c0], [1, c1], [3, c2])],
    ['only chunk 0', chunks([0, c0])],
    ['no chunk 0', chunks([1, c1], [2, c2])],
    ['a duplicated chunk in place of another', chunks([0, c0], [1, c0], [2, c2])],
    ['a chunk repeated, the wrong value first', chunks([0, c0], [1, c2], [1, c1], [2, c2])],
    ['chunk values swapped', chunks([0, c0], [1, c2], [2, c1])],
    ['chunks beyond the last index (30)', chunks([0, c0], [1, c1], [2, c2], [30, 'x'])],
    ['chunks with leading zeros', chunks(['00', c0], ['01', c1], ['02', c2])],
    ['the "bearer " prefix missing', `skymarshal_auth=${bare}`],
    ['the "bearer " prefix missing in split chunks', chunks([0, bare.slice(0, 500)], [1, bare.slice(500)])],
    ['"bearer" glued to the token', `skymarshal_auth=bearer${bare}`],
    ['a second word after the token', `skymarshal_auth=${value}%20x`],
    [
      'skymarshal_auth forged, valid chunks beside it',
      `${asCookie(`${parts(alice.token)[0]}..`)}; ${chunks([0, c0], [1, c1], [2, c2])}`,
    ],
    [
      'skymarshal_auth empty, valid chunks beside it',
      `skymarshal_auth=; ${chunks([0, c0], [1, c1], [2, c2])}`,
    ],
    ['only the csrf cookie', `skymarshal_csrf=${alice.csrf}`],
  ];
  const problems: string[] = [];
  for (const [label, cookie] of cookieCases) problems.push(...(await refusedEverywhere(label, { cookie })));
  expect(problems).toEqual([]);
  battery.tokens += cookieCases.length;
  battery.passed++;
});

test('a logout ends its whole login family: every token of it is refused on a second node within 1 s', async () => {
  // A second node of the same deployment (as behind a load balancer): the first one's public URL,
  // signing key and Redis keys; the test reaches it on a port of its own.
  const second = await startNode({
    fake,
    options: {
      externalUrl: node.externalUrl,
      signingKey: pem(nodeKey),
      keyPrefix: node.prefix,
      rateLimit: { perMinute: 0 },
    },
    routes: (app) => {
      app.get('/host/teams/:team/pipelines', requiresTeamRole('viewer'), (_req: Request, res: Response) => {
        res.json([]);
      });
    },
  });
  try {
    // One sky CLI login of bob's: its first token, and a refreshed one of the same family.
    const cli = await cliLoginAs(node.url, fake, 'bob');
    const refreshed = await tokenRequest(node.url, {
      grant_type: 'refresh_token',
      refresh_token: cli.refreshToken,
    });
    expect(refreshed.status).toBe(200);
    const sibling = String(refreshed.body['access_token']);
    const rotated = String(refreshed.body['refresh_token']);
    const sid = payloadOf(cli.token)['sid'];
    expect(typeof sid).toBe('string');
    expect(payloadOf(sibling)['sid']).toBe(sid);
    // Another login of bob's (a family of its own), which the logout must leave alone.
    const other = await loginAs(node.url, fake, 'bob');
    expect(payloadOf(other.token)['sid']).not.toBe(sid);
    const now = Math.floor(Date.now() / 1000);
    // Signed later with the node's key and the ended family's sid: refused too, whenever it was made.
    const late = jws(
      { alg: 'RS256', typ: 'JWT', kid },
      {
        ...payloadOf(sibling),
        jti: `${String(payloadOf(sibling)['jti'])}-late`,
        iat: now + 1,
        exp: now + 3600,
      },
    );
    const before: Record<string, number[]> = {};
    for (const [label, token] of Object.entries({ first: cli.token, sibling, late, other: other.token })) {
      before[label] = await accepted({ authorization: `Bearer ${token}` }, ROUTES, second.url);
    }
    expect(before).toEqual({ first: [200, 200], sibling: [200, 200], late: [200, 200], other: [200, 200] });

    const logout = await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: cli.bearer });
    expect(logout.status).toBe(204);
    const ended = Date.now();
    const family: [string, string][] = [
      ['the token that logged out', cli.token],
      ['a refreshed token of its family', sibling],
      ['a token of its family signed after the logout', late],
    ];
    // Polled on the second node: refused everywhere within a second of the logout's answer.
    let waited = 0;
    for (;;) {
      const statuses = await Promise.all(
        family.map(
          async ([, token]) =>
            (await call('/api/v1/user', { authorization: `Bearer ${token}` }, second.url)).status,
        ),
      );
      waited = Date.now() - ended;
      if (statuses.every((status) => status === 401) || waited > 1_000) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(waited).toBeLessThanOrEqual(1_000);
    const problems: string[] = [];
    for (const base of [second.url, node.url]) {
      for (const [label, token] of family) {
        problems.push(
          ...(await refusedEverywhere(
            `${label} (${base === node.url ? 'first' : 'second'} node)`,
            { authorization: `Bearer ${token}` },
            ROUTES,
            base,
          )),
          ...(await refusedEverywhere(
            `${label} (${base === node.url ? 'first' : 'second'} node)`,
            { cookie: asCookie(token) },
            ROUTES,
            base,
          )),
        );
      }
    }
    expect(problems).toEqual([]);
    // Its refresh token is gone with it; bob's other login lives on, on both nodes.
    const again = await tokenRequest(second.url, { grant_type: 'refresh_token', refresh_token: rotated });
    expect({ status: again.status, error: again.body['error'] }).toEqual({
      status: 400,
      error: 'invalid_grant',
    });
    for (const base of [node.url, second.url]) {
      expect(await accepted({ authorization: `Bearer ${other.token}` }, ROUTES, base)).toEqual([200, 200]);
    }
    battery.tokens += family.length;
    battery.passed++;
  } finally {
    await second.close();
  }
});

test('an oversized token (> 120 KB) is 401 on the web node (128 KiB headers) and 431 on a default node', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-battery-'));
  const keyFile = path.join(dir, 'signing_key.pem');
  writeFileSync(keyFile, pem(nodeKey), { mode: 0o600 });
  const port = await freePort();
  const web: WebNode = await startWebNode({
    CONCOURSE_BIND_IP: '127.0.0.1',
    CONCOURSE_BIND_PORT: String(port),
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
    CONCOURSE_SESSION_SIGNING_KEY: keyFile,
    SKY_RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'silent',
  });
  try {
    if (!web.fake) throw new Error('the web node should run its own fake Bitbucket');
    const admin = await loginAs(web.url, web.fake, 'alice');
    expect(await accepted(admin.bearer, ['/api/v1/user'], web.url)).toEqual([200]);
    const now = Math.floor(Date.now() / 1000);
    const claims = payloadOf(admin.token);
    // Signed by the node's own key with the right claims: only its size is wrong.
    const groups = ['g'.repeat(Math.ceil((121 * 1024 * 3) / 4))];
    const big = jws({ alg: 'RS256', typ: 'JWT', kid }, { ...claims, iat: now, exp: now + 3600, groups });
    expect(big.length).toBeGreaterThan(120 * 1024);
    expect(big.length).toBeLessThan(126 * 1024);
    const problems = [
      ...(await refusedEverywhere(
        'oversized',
        { authorization: `Bearer ${big}` },
        ['/api/v1/user'],
        web.url,
      )),
      ...(await refusedEverywhere('oversized', { cookie: asCookie(big) }, ['/api/v1/user'], web.url)),
    ];
    expect(problems).toEqual([]);
    // A default node (Node's 16 KiB header limit) refuses the same header block before sky reads it.
    for (const how of [{ authorization: `Bearer ${big}` }, { cookie: asCookie(big) }]) {
      expect((await call('/api/v1/user', how)).status).toBe(431);
    }
    battery.tokens += 1;
    battery.passed++;
  } finally {
    await web.close();
  }
});

afterAll(() => {
  // Each test counts itself as passed at its very end, so a failed assertion means no figures.
  if (battery.passed === TESTS) {
    recordFigures('Token battery', {
      'forged or broken tokens tried': battery.tokens,
      'HTTP requests sent': requests,
      accepted: 0,
    });
  }
});
