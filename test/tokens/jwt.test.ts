import { createHmac, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import fc from 'fast-check';
import type { Identity } from '../../lib/connector';
import { generateSigningKey, issueToken, jwks, loadSigningKey, thumbprint, TokenVerifier } from '../../lib/tokens';

const key = generateSigningKey();
const identity: Identity = {
  connector: 'bitbucket-cloud',
  userId: '{a-b}',
  accountId: '557058:1',
  userName: 'alice',
  name: 'Alice',
  email: 'alice@example.com',
  groups: ['acme'],
};
const base = { issuer: 'https://ci.example.com', audience: 'sky', durationMs: 3600_000, identity, teams: { main: ['owner'] }, isAdmin: true };
const verifier = new TokenVerifier({ keys: [key], issuer: base.issuer, audience: 'sky' });
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

function refused(token: string, nowMs?: number): void {
  expect(() => new TokenVerifier({ keys: [key], issuer: base.issuer, audience: 'sky' }).verify(token, nowMs)).toThrow(
    expect.objectContaining({ code: 'not_authorized', status: 401, message: 'not authorized' }),
  );
}

test('issue → verify round trip, with every claim of SPEC §7.1', () => {
  const { token, claims } = issueToken(key, base);
  expect(verifier.verify(token)).toEqual(claims);
  expect(claims).toMatchObject({
    iss: 'https://ci.example.com',
    aud: 'sky',
    sub: 'bitbucket-cloud:{a-b}',
    user_id: '{a-b}',
    user_name: 'alice',
    email: 'alice@example.com',
    groups: ['acme'],
    teams: { main: ['owner'] },
    is_admin: true,
  });
  expect(claims.exp - claims.iat).toBe(3600);
  const [h, p, s] = token.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
  expect(header).toEqual({ alg: 'RS256', typ: 'JWT', kid: key.kid });
  const jwk = jwks([key]).keys[0];
  const pub = createPublicKey({ key: jwk as never, format: 'jwk' });
  expect(verify('RSA-SHA256', Buffer.from(`${h}.${p}`), pub, Buffer.from(s, 'base64url'))).toBe(true);
});

test('kid is the RFC 7638 thumbprint (the RFC §3.1 example)', () => {
  const n =
    '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
  expect(thumbprint(n, 'AQAB')).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
});

test('the token battery: every bad token is 401 not authorized', () => {
  const { token, claims } = issueToken(key, base);
  const [h, p, s] = token.split('.') as [string, string, string];
  const other = generateSigningKey();
  const signedByOther = issueToken(other, base).token;
  const resign = (payload: Record<string, unknown>): string => {
    const t = issueToken(key, base).token; // fresh signature over a changed payload
    const [hh] = t.split('.') as [string];
    return `${hh}.${b64(payload)}.${s}`;
  };
  const pem = key.publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const hsHeader = b64({ alg: 'HS256', typ: 'JWT', kid: key.kid });
  const hs = `${hsHeader}.${p}.${createHmac('sha256', pem).update(`${hsHeader}.${p}`).digest('base64url')}`;
  const cases: Record<string, string> = {
    'alg none': `${b64({ alg: 'none', kid: key.kid })}.${p}.`,
    'alg none, no signature segment': `${b64({ alg: 'none', kid: key.kid })}.${p}`,
    'HS256 signed with the public key': hs,
    'RS512 header': `${b64({ alg: 'RS512', kid: key.kid })}.${p}.${s}`,
    'unknown kid': signedByOther,
    'missing kid': `${b64({ alg: 'RS256' })}.${p}.${s}`,
    truncated: token.slice(0, token.length - 10),
    'extra segment': `${token}.x`,
    oversized: `${h}.${p}${'A'.repeat(20_000)}.${s}`,
    'tampered payload': `${h}.${b64({ ...claims, is_admin: true, teams: { other: ['owner'] } })}.${s}`,
    'tampered signature': `${h}.${p}.${s.slice(0, 20)}${s[20] === 'A' ? 'B' : 'A'}${s.slice(21)}`,
    'header not JSON': `${Buffer.from('{nope').toString('base64url')}.${p}.${s}`,
    'padding in a segment': `${h}=.${p}.${s}`,
    'invalid characters': `${h}.${p}+/.${s}`,
    empty: '',
    'resigned payload': resign({ ...claims, sub: 'bitbucket-cloud:{mallory}' }),
  };
  for (const [name, bad] of Object.entries(cases)) {
    try {
      refused(bad);
    } catch (err) {
      throw new Error(`${name}: ${(err as Error).message}`);
    }
  }
});

test('iss, aud and time claims, with 60 s leeway', () => {
  const now = Date.now();
  const wrongIss = issueToken(key, { ...base, issuer: 'https://evil.example.com' }).token;
  const wrongAud = issueToken(key, { ...base, audience: 'other' }).token;
  refused(wrongIss);
  refused(wrongAud);
  const expired = issueToken(key, { ...base, durationMs: 1000, now: now - 120_000 }).token;
  refused(expired, now);
  const withinLeeway = issueToken(key, { ...base, durationMs: 1000, now: now - 30_000 }).token;
  expect(verifier.verify(withinLeeway, now).sub).toBe('bitbucket-cloud:{a-b}');
  const future = issueToken(key, { ...base, now: now + 3600_000 }).token;
  refused(future, now);
});

test('a cached token is still refused once it expires', () => {
  const now = Date.now();
  const { token } = issueToken(key, { ...base, durationMs: 10_000, now });
  const v = new TokenVerifier({ keys: [key], issuer: base.issuer, audience: 'sky' });
  expect(v.verify(token, now).jti).toBeTruthy();
  expect(() => v.verify(token, now + 120_000)).toThrow('not authorized');
});

test('property: changing any one character of the signature is refused', () => {
  const { token } = issueToken(key, base);
  const sigStart = token.lastIndexOf('.') + 1;
  fc.assert(
    fc.property(fc.integer({ min: sigStart, max: token.length - 2 }), fc.constantFrom(...'ABCDEFabcdef0123456789-_'), (i, c) => {
      fc.pre(token[i] !== c);
      refused(token.slice(0, i) + c + token.slice(i + 1));
    }),
    { numRuns: 200 },
  );
});

test('loadSigningKey refuses small RSA keys, EC keys, public keys and garbage, naming the source', () => {
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const pub = key.publicKey.export({ format: 'pem', type: 'spki' }).toString();
  expect(() => loadSigningKey(small, 'key.pem')).toThrow('key.pem: RSA key has 1024 bits; at least 2048 are needed');
  expect(() => loadSigningKey(ec, 'key.pem')).toThrow('key.pem: must be an RSA private key');
  expect(() => loadSigningKey(pub, 'key.pem')).toThrow('key.pem: not a PEM private key');
  expect(() => loadSigningKey('garbage', 'key.pem')).toThrow('key.pem: not a PEM private key');
  const pem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  expect(loadSigningKey(pem).kid).toBe(key.kid);
});
