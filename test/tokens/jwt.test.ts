import { createHmac, sign } from 'node:crypto';
import fc from 'fast-check';
import jwt from 'jsonwebtoken';
import type { Identity } from '../../lib/connector';
import { generateSigningKey, issueToken, TokenVerifier, type SigningKey } from '../../lib/tokens';

const key = generateSigningKey();
const identity: Identity = {
  connector: 'bitbucket-cloud',
  userId: '{a1b2c3d4-0000-4000-8000-000000000001}',
  accountId: '557058:alice',
  userName: 'alice',
  name: 'Alice Liddell',
  email: 'alice@example.com',
  groups: ['acme', 'acme/devs', 'acme:owner'],
};
const issuer = 'https://ci.example.com';
const base = {
  issuer,
  audience: 'sky',
  durationMs: 3600_000,
  identity,
  teams: { main: ['owner'] },
  isAdmin: true,
  familyId: 'family-1',
};
const b64 = (v: unknown): string =>
  Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const verifierFor = (keys: SigningKey[] = [key]): TokenVerifier =>
  new TokenVerifier({ keys, issuer, audience: 'sky' });

/** A token signed by `signer` over any header and payload text, to reach the checks after the signature. */
function signed(header: unknown, payload: unknown, signer: SigningKey = key): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign('RSA-SHA256', Buffer.from(input), signer.privateKey).toString('base64url')}`;
}

/** Asserts the one 401 and returns its reason (the cause, for logs). */
function refused(token: string, nowMs?: number, verifier = verifierFor()): string {
  let caught: unknown;
  try {
    verifier.verify(token, nowMs);
  } catch (err) {
    caught = err;
  }
  expect(caught).toMatchObject({
    name: 'SkyError',
    code: 'not_authorized',
    status: 401,
    message: 'not authorized',
  });
  // The reason is for logs; it never repeats the token.
  const reason = String((caught as { cause?: Error }).cause?.message);
  expect(reason.length).toBeGreaterThan(0);
  if (token.length > 20) expect(reason).not.toContain(token.slice(0, 20));
  return reason;
}

describe('issue → verify', () => {
  test('round trip with every claim of SPEC §7.1', () => {
    const now = Date.UTC(2026, 0, 1, 12);
    const { token, claims } = issueToken(key, { ...base, now });
    expect(verifierFor().verify(token, now)).toEqual(claims);
    expect(claims).toEqual({
      iss: issuer,
      aud: 'sky',
      sub: 'bitbucket-cloud:{a1b2c3d4-0000-4000-8000-000000000001}',
      iat: now / 1000,
      exp: now / 1000 + 3600,
      jti: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      user_id: '{a1b2c3d4-0000-4000-8000-000000000001}',
      account_id: '557058:alice',
      user_name: 'alice',
      name: 'Alice Liddell',
      sid: 'family-1',
      email: 'alice@example.com',
      connector: 'bitbucket-cloud',
      groups: ['acme', 'acme/devs', 'acme:owner'],
      teams: { main: ['owner'] },
      is_admin: true,
      csrf: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
    });
    const [h] = token.split('.') as [string];
    expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({
      alg: 'RS256',
      typ: 'JWT',
      kid: key.kid,
    });
  });

  test('missing user name and email become empty strings; jti and csrf are fresh per token', () => {
    const { userName: _u, email: _e, ...bare } = identity;
    const first = issueToken(key, { ...base, identity: bare, isAdmin: false });
    const second = issueToken(key, { ...base, identity: bare, isAdmin: false });
    expect(first.claims).toMatchObject({ user_name: '', email: '', is_admin: false });
    expect(verifierFor().verify(first.token)).toMatchObject({ user_name: '', email: '' });
    expect(first.claims.jti).not.toBe(second.claims.jti);
    expect(first.claims.csrf).not.toBe(second.claims.csrf);
  });

  test('a token with thousands of groups (~20 KB and more) still verifies', () => {
    const groups = Array.from({ length: 2000 }, (_, i) => `workspace-${i}/group-${i}`);
    const { token } = issueToken(key, { ...base, identity: { ...identity, groups } });
    expect(token.length).toBeGreaterThan(20_000);
    expect(verifierFor().verify(token).groups).toHaveLength(2000);
  });

  test('verified claims cannot be changed by one caller under the feet of the next', () => {
    const { token } = issueToken(key, base);
    const verifier = verifierFor();
    const claims = verifier.verify(token);
    expect(() => {
      claims.is_admin = false;
    }).toThrow(TypeError);
    expect(() => claims.groups.push('evil')).toThrow(TypeError);
    expect(() => claims.teams['main']?.push('member')).toThrow(TypeError);
    expect(verifier.verify(token)).toMatchObject({
      is_admin: true,
      groups: identity.groups,
      teams: { main: ['owner'] },
    });
  });

  test('a verifier without an issuer or audience to check is refused at construction', () => {
    expect(() => new TokenVerifier({ keys: [key], issuer: '', audience: 'sky' })).toThrow(
      expect.objectContaining({
        code: 'invalid_config',
        message: 'token verifier: issuer must not be empty',
      }),
    );
    expect(() => new TokenVerifier({ keys: [key], issuer, audience: '' })).toThrow(
      'token verifier: audience must not be empty',
    );
  });
});

describe('the token battery: every bad token is 401 not authorized', () => {
  const now = Date.now();
  const { token, claims } = issueToken(key, { ...base, now });
  const [h, p, s] = token.split('.') as [string, string, string];
  const header = { alg: 'RS256', typ: 'JWT', kid: key.kid };
  const pem = key.publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const hmac = (alg: string): string => {
    const hh = b64({ alg, typ: 'JWT', kid: key.kid });
    return `${hh}.${p}.${createHmac('sha256', pem).update(`${hh}.${p}`).digest('base64url')}`;
  };
  const flip = (text: string, i: number): string =>
    `${text.slice(0, i)}${text[i] === 'A' ? 'B' : 'A'}${text.slice(i + 1)}`;
  // 256 signature bytes take 342 characters: the last one carries 4 spare bits, so this decodes identically.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(s.slice(-1));
  const sameBytes = `${s.slice(0, -1)}${alphabet[last ^ 1] ?? ''}`;

  // Each with the reason the log names: sky's own words, whether sky or jsonwebtoken refused it.
  const cases: [string, string, string][] = [
    ['alg none, empty signature', `${b64({ alg: 'none', kid: key.kid })}.${p}.`, 'alg is not RS256'],
    ['alg none, two segments', `${b64({ alg: 'none', kid: key.kid })}.${p}`, 'token has 2 segments, not 3'],
    ['alg None (case)', `${b64({ ...header, alg: 'None' })}.${p}.${s}`, 'alg is not RS256'],
    ['HS256 signed with the public key PEM as HMAC secret', hmac('HS256'), 'alg is not RS256'],
    [
      'RS512 header over an RS256 signature',
      `${b64({ ...header, alg: 'RS512' })}.${p}.${s}`,
      'alg is not RS256',
    ],
    ['PS256 header', `${b64({ ...header, alg: 'PS256' })}.${p}.${s}`, 'alg is not RS256'],
    ['alg missing', `${b64({ typ: 'JWT', kid: key.kid })}.${p}.${s}`, 'alg is not RS256'],
    ['unknown kid (another key)', issueToken(generateSigningKey(), base).token, 'unknown kid'],
    ['missing kid', signed({ alg: 'RS256', typ: 'JWT' }, claims), 'header has no kid'],
    ['kid not a string', signed({ alg: 'RS256', kid: [key.kid] }, claims), 'header has no kid'],
    ['crit header', signed({ ...header, crit: ['exp'] }, claims), 'header has crit'],
    ['truncated', token.slice(0, -10), 'bad signature'],
    ['truncated to two segments', `${h}.${p}`, 'token has 2 segments, not 3'],
    ['extra segment', `${token}.${s}`, 'token has 4 segments, not 3'],
    ['empty extra segment', `${token}.`, 'token has 4 segments, not 3'],
    ['oversized', `${h}.${p}${'A'.repeat(130_000)}.${s}`, 'token longer than 122880 characters'],
    ['empty', '', 'no token'],
    [
      'tampered payload (kept signature)',
      `${h}.${b64({ ...claims, teams: { other: ['owner'] } })}.${s}`,
      'bad signature',
    ],
    ['tampered signature', `${h}.${p}.${flip(s, 100)}`, 'bad signature'],
    [
      'signature of another token',
      `${h}.${p}.${issueToken(key, base).token.split('.')[2] ?? ''}`,
      'bad signature',
    ],
    ['header not JSON', `${b64('{nope')}.${p}.${s}`, 'header is not JSON'],
    ['header a JSON array', `${b64([header])}.${p}.${s}`, 'header is not an object'],
    ['header JSON null', `${b64('null')}.${p}.${s}`, 'header is not an object'],
    ['payload not JSON (signed)', signed(header, 'not json'), 'payload is not JSON'],
    ['payload a JSON string (signed)', signed(header, JSON.stringify('hello')), 'payload is not an object'],
    ['padding in the header', `${h}=.${p}.${s}`, 'header is not base64url'],
    ['padding in the signature', `${h}.${p}.${s}==`, 'signature is not base64url'],
    [
      'standard base64 characters',
      `${h}.${p.replace(/-/g, '+').replace(/_/g, '/')}+/.${s}`,
      'payload is not base64url',
    ],
    ['whitespace inside', `${h}.${p} .${s}`, 'payload is not base64url'],
    ['non-ASCII inside', `${h}.${p}é.${s}`, 'payload is not base64url'],
    [
      'non-canonical base64url (spare bits) in the signature',
      `${h}.${p}.${sameBytes}`,
      'signature is not canonical base64url',
    ],
    [
      'a signature of length 4n+1 (a stray character)',
      `${h}.${p}.${s}AAA`,
      'signature is not canonical base64url',
    ],
  ];
  test.each(cases)('%s', (_name, bad, reason) => expect(refused(bad, now)).toBe(reason));

  test('the non-canonical signature above really decodes to the same bytes', () => {
    expect(Buffer.from(sameBytes, 'base64url').equals(Buffer.from(s, 'base64url'))).toBe(true);
  });

  const claimCases: [string, Record<string, unknown>, string][] = [
    ['wrong iss', { ...claims, iss: 'https://evil.example.com' }, 'wrong iss'],
    ['iss with a trailing slash', { ...claims, iss: `${issuer}/` }, 'wrong iss'],
    ['wrong aud', { ...claims, aud: 'other' }, 'wrong aud'],
    ['aud list without ours', { ...claims, aud: ['other', 'another'] }, 'wrong aud'],
    ['aud missing', { ...claims, aud: undefined }, 'wrong aud'],
    ['exp missing', { ...claims, exp: undefined }, 'claim iat or exp missing or not a number'],
    ['exp a string', { ...claims, exp: String(claims.exp) }, 'claim iat or exp missing or not a number'],
    ['iat missing', { ...claims, iat: undefined }, 'claim iat or exp missing or not a number'],
    ['nbf in the future', { ...claims, nbf: claims.iat + 3600 }, 'token not yet valid'],
    ['nbf not a number', { ...claims, nbf: 'soon' }, 'claim nbf is not a number'],
    ['sub empty', { ...claims, sub: '' }, 'claim sub is empty'],
    ['jti empty', { ...claims, jti: '' }, 'claim jti is empty'],
    ['jti a number', { ...claims, jti: 42 }, 'claim jti missing or not a string'],
    ['csrf empty', { ...claims, csrf: '' }, 'claim csrf is empty'],
    ['csrf missing', { ...claims, csrf: undefined }, 'claim csrf missing or not a string'],
    ['groups a string', { ...claims, groups: 'acme' }, 'claim groups is not a list of strings'],
    ['groups with a number', { ...claims, groups: ['acme', 1] }, 'claim groups is not a list of strings'],
    ['teams a list', { ...claims, teams: [['main', 'owner']] }, 'claim teams is not an object'],
    [
      'teams with a string role list',
      { ...claims, teams: { main: 'owner' } },
      'claim teams has a bad role list',
    ],
    ['is_admin a string', { ...claims, is_admin: 'true' }, 'claim is_admin is not a boolean'],
    ['name missing', { ...claims, name: undefined }, 'claim name missing or not a string'],
  ];
  test.each(claimCases)('signed by our key but %s', (_name, payload, reason) =>
    expect(refused(signed(header, payload), now)).toBe(reason),
  );

  test('expired beyond the 60 s leeway is refused; within the leeway it passes', () => {
    const short = { ...base, durationMs: 1000 };
    expect(refused(issueToken(key, { ...short, now: now - 62_000 }).token, now)).toBe('token expired');
    expect(verifierFor().verify(issueToken(key, { ...short, now: now - 30_000 }).token, now).sub).toBe(
      claims.sub,
    );
    const strict = new TokenVerifier({ keys: [key], issuer, audience: 'sky', leewaySeconds: 0 });
    expect(refused(issueToken(key, { ...short, now: now - 30_000 }).token, now, strict)).toBe(
      'token expired',
    );
  });

  test('issued in the future beyond the leeway is refused; slightly ahead clocks are tolerated', () => {
    expect(refused(issueToken(key, { ...base, now: now + 3600_000 }).token, now)).toBe(
      'token issued in the future',
    );
    expect(verifierFor().verify(issueToken(key, { ...base, now: now + 30_000 }).token, now).sub).toBe(
      claims.sub,
    );
  });

  test('an exp beyond JSON numbers (never expiring for jsonwebtoken alone) is refused in front of it', () => {
    const forever = signed(header, `${JSON.stringify(claims).slice(0, -1)},"exp":1e400}`);
    const jwtOptions = { algorithms: ['RS256' as const], issuer, audience: 'sky' };
    expect(jwt.verify(forever, key.publicKey, jwtOptions)).toMatchObject({ exp: Infinity });
    expect(refused(forever, now)).toBe('claim iat or exp missing or not a number');
  });

  test('an aud list containing our audience is accepted, and reported as our audience', () => {
    const verified = verifierFor().verify(signed(header, { ...claims, aud: ['other', 'sky'] }), now);
    expect(verified.aud).toBe('sky');
  });
});

describe('hostile payloads', () => {
  const { claims } = issueToken(key, base);
  const header = { alg: 'RS256', typ: 'JWT', kid: key.kid };
  const body = JSON.stringify(claims).slice(1, -1);

  test('__proto__ in the payload pollutes nothing and cannot stand in for a missing claim', () => {
    const { is_admin: _dropped, ...rest } = claims;
    const smuggled = `{"__proto__":{"is_admin":true,"polluted":true},${JSON.stringify(rest).slice(1)}`;
    refused(signed(header, smuggled));
    const alongside = `{"__proto__":{"polluted":true},${body}}`;
    const verified = verifierFor().verify(signed(header, alongside));
    expect(verified.is_admin).toBe(true);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  test('the claims handed out are the checked ones: other payload members are not kept, a "__proto__" team stays a team', () => {
    const teams = `{"__proto__":["owner"],"main":["owner"]}`;
    const payload = `{${body.replace(/"teams":\{[^}]*\}/, `"teams":${teams}`)},"role":"admin","nbf":${claims.iat}}`;
    const verified = verifierFor().verify(signed(header, payload));
    expect(verified).not.toHaveProperty('role');
    expect(verified).not.toHaveProperty('nbf');
    expect(Object.getPrototypeOf(verified.teams)).toBe(Object.prototype);
    expect(Object.entries(verified.teams)).toEqual([
      ['__proto__', ['owner']],
      ['main', ['owner']],
    ]);
  });

  test('duplicate keys: the value that was signed is the one used (last wins, as JSON.parse)', () => {
    const verified = verifierFor().verify(signed(header, `{${body},"is_admin":false}`));
    expect(verified.is_admin).toBe(false);
  });

  test('a header with __proto__ carrying alg/kid does not count as having them', () => {
    const token = signed(`{"__proto__":{"alg":"RS256","kid":"${key.kid}"}}`, claims);
    refused(token);
  });
});

describe('the cache', () => {
  test('a cache hit still re-checks exp', () => {
    const now = Date.now();
    const { token } = issueToken(key, { ...base, durationMs: 10_000, now });
    const verifier = verifierFor();
    expect(verifier.verify(token, now).exp).toBe(Math.floor(now / 1000) + 10);
    expect(verifier.verify(token, now + 5_000).exp).toBe(Math.floor(now / 1000) + 10);
    expect(refused(token, now + 71_000, verifier)).toBe('token expired');
  });

  test('a small cache keeps working as tokens come and go', () => {
    const verifier = new TokenVerifier({ keys: [key], issuer, audience: 'sky', cacheSize: 2 });
    const tokens = Array.from({ length: 5 }, () => issueToken(key, base));
    for (let round = 0; round < 3; round++) {
      for (const { token, claims } of tokens) expect(verifier.verify(token)).toEqual(claims);
    }
    const noCache = new TokenVerifier({ keys: [key], issuer, audience: 'sky', cacheSize: 0 });
    expect(noCache.verify(tokens[0]?.token ?? '')).toEqual(tokens[0]?.claims);
  });

  test('keys are chosen by kid: a verifier with two keys accepts both, a rotated-out key is refused', () => {
    const next = generateSigningKey();
    const both = verifierFor([key, next]);
    expect(both.verify(issueToken(key, base).token).sub).toBe(`bitbucket-cloud:${identity.userId}`);
    expect(both.verify(issueToken(next, base).token).sub).toBe(`bitbucket-cloud:${identity.userId}`);
    expect(refused(issueToken(key, base).token, undefined, verifierFor([next]))).toBe('unknown kid');
  });
});

describe('property: one changed character anywhere in a valid token is refused', () => {
  const { token } = issueToken(key, base);
  const verifier = verifierFor();
  verifier.verify(token); // cached, so a mutation must not be mistaken for the cached original
  const replacements = [
    ...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',
    '.',
    '=',
    '+',
    '/',
    ' ',
    'é',
  ];

  test('anywhere in the token', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: token.length - 1 }), fc.constantFrom(...replacements), (i, c) => {
        fc.pre(token[i] !== c);
        refused(token.slice(0, i) + c + token.slice(i + 1), undefined, verifier);
      }),
      { numRuns: 300 },
    );
  });

  test('in the middle of the signature', () => {
    const sigStart = token.lastIndexOf('.') + 1;
    fc.assert(
      fc.property(
        fc.integer({ min: sigStart, max: token.length - 1 }),
        fc.constantFrom(...replacements),
        (i, c) => {
          fc.pre(token[i] !== c);
          refused(token.slice(0, i) + c + token.slice(i + 1), undefined, verifier);
        },
      ),
      { numRuns: 200 },
    );
  });
});
