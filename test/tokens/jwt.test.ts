import { createHmac, sign } from 'node:crypto';
import fc from 'fast-check';
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

function refused(token: string, nowMs?: number, verifier = verifierFor()): void {
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

  const cases: [string, string][] = [
    ['alg none, empty signature', `${b64({ alg: 'none', kid: key.kid })}.${p}.`],
    ['alg none, two segments', `${b64({ alg: 'none', kid: key.kid })}.${p}`],
    ['alg None (case)', `${b64({ ...header, alg: 'None' })}.${p}.${s}`],
    ['HS256 signed with the public key PEM as HMAC secret', hmac('HS256')],
    ['RS512 header over an RS256 signature', `${b64({ ...header, alg: 'RS512' })}.${p}.${s}`],
    ['PS256 header', `${b64({ ...header, alg: 'PS256' })}.${p}.${s}`],
    ['alg missing', `${b64({ typ: 'JWT', kid: key.kid })}.${p}.${s}`],
    ['unknown kid (another key)', issueToken(generateSigningKey(), base).token],
    ['missing kid', signed({ alg: 'RS256', typ: 'JWT' }, claims)],
    ['kid not a string', signed({ alg: 'RS256', kid: [key.kid] }, claims)],
    ['crit header', signed({ ...header, crit: ['exp'] }, claims)],
    ['truncated', token.slice(0, -10)],
    ['truncated to two segments', `${h}.${p}`],
    ['extra segment', `${token}.${s}`],
    ['empty extra segment', `${token}.`],
    ['oversized', `${h}.${p}${'A'.repeat(130_000)}.${s}`],
    ['empty', ''],
    ['tampered payload (kept signature)', `${h}.${b64({ ...claims, teams: { other: ['owner'] } })}.${s}`],
    ['tampered signature', `${h}.${p}.${flip(s, 100)}`],
    ['signature of another token', `${h}.${p}.${issueToken(key, base).token.split('.')[2] ?? ''}`],
    ['header not JSON', `${b64('{nope')}.${p}.${s}`],
    ['header a JSON array', `${b64([header])}.${p}.${s}`],
    ['header JSON null', `${b64('null')}.${p}.${s}`],
    ['payload not JSON (signed)', signed(header, 'not json')],
    ['payload a JSON string (signed)', signed(header, JSON.stringify('hello'))],
    ['padding in the header', `${h}=.${p}.${s}`],
    ['padding in the signature', `${h}.${p}.${s}==`],
    ['standard base64 characters', `${h}.${p.replace(/-/g, '+').replace(/_/g, '/')}+/.${s}`],
    ['whitespace inside', `${h}.${p} .${s}`],
    ['non-ASCII inside', `${h}.${p}é.${s}`],
    ['non-canonical base64url (spare bits) in the signature', `${h}.${p}.${sameBytes}`],
    ['a signature of length 4n+1 (a stray character)', `${h}.${p}.${s}AAA`],
  ];
  test.each(cases)('%s', (_name, bad) => refused(bad, now));

  test('the non-canonical signature above really decodes to the same bytes', () => {
    expect(Buffer.from(sameBytes, 'base64url').equals(Buffer.from(s, 'base64url'))).toBe(true);
  });

  const claimCases: [string, Record<string, unknown>][] = [
    ['wrong iss', { ...claims, iss: 'https://evil.example.com' }],
    ['iss with a trailing slash', { ...claims, iss: `${issuer}/` }],
    ['wrong aud', { ...claims, aud: 'other' }],
    ['aud list without ours', { ...claims, aud: ['other', 'another'] }],
    ['aud missing', { ...claims, aud: undefined }],
    ['exp missing', { ...claims, exp: undefined }],
    ['exp a string', { ...claims, exp: String(claims.exp) }],
    ['iat missing', { ...claims, iat: undefined }],
    ['nbf in the future', { ...claims, nbf: claims.iat + 3600 }],
    ['nbf not a number', { ...claims, nbf: 'soon' }],
    ['sub empty', { ...claims, sub: '' }],
    ['jti empty', { ...claims, jti: '' }],
    ['jti a number', { ...claims, jti: 42 }],
    ['csrf empty', { ...claims, csrf: '' }],
    ['csrf missing', { ...claims, csrf: undefined }],
    ['groups a string', { ...claims, groups: 'acme' }],
    ['groups with a number', { ...claims, groups: ['acme', 1] }],
    ['teams a list', { ...claims, teams: [['main', 'owner']] }],
    ['teams with a string role list', { ...claims, teams: { main: 'owner' } }],
    ['is_admin a string', { ...claims, is_admin: 'true' }],
    ['name missing', { ...claims, name: undefined }],
  ];
  test.each(claimCases)('signed by our key but %s', (_name, payload) =>
    refused(signed(header, payload), now),
  );

  test('expired beyond the 60 s leeway is refused; within the leeway it passes', () => {
    const short = { ...base, durationMs: 1000 };
    refused(issueToken(key, { ...short, now: now - 62_000 }).token, now);
    expect(verifierFor().verify(issueToken(key, { ...short, now: now - 30_000 }).token, now).sub).toBe(
      claims.sub,
    );
    const strict = new TokenVerifier({ keys: [key], issuer, audience: 'sky', leewaySeconds: 0 });
    refused(issueToken(key, { ...short, now: now - 30_000 }).token, now, strict);
  });

  test('issued in the future beyond the leeway is refused; slightly ahead clocks are tolerated', () => {
    refused(issueToken(key, { ...base, now: now + 3600_000 }).token, now);
    expect(verifierFor().verify(issueToken(key, { ...base, now: now + 30_000 }).token, now).sub).toBe(
      claims.sub,
    );
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
    refused(token, now + 71_000, verifier);
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
    refused(issueToken(key, base).token, undefined, verifierFor([next]));
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
