import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { deriveSecret, generateSigningKey, jwks, loadSigningKey, thumbprint } from '../../lib/tokens';

const key = generateSigningKey();
const pkcs8 = (k: ReturnType<typeof generateKeyPairSync>['privateKey']): string =>
  k.export({ format: 'pem', type: 'pkcs8' }).toString();

test('kid is the RFC 7638 thumbprint: the example key of RFC 7638 §3.1', () => {
  const n =
    '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
  expect(thumbprint(n, 'AQAB')).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  expect(key.kid).toBe(thumbprint(key.publicJwk.n, key.publicJwk.e));
});

test('the JWKS publishes the public key: node rebuilds it from the JWK and checks a signature', () => {
  const { keys } = jwks([key]);
  expect(keys).toHaveLength(1);
  const [jwk] = keys;
  expect(jwk).toEqual({
    kty: 'RSA',
    n: expect.any(String),
    e: 'AQAB',
    kid: key.kid,
    alg: 'RS256',
    use: 'sig',
  });
  expect(jwk).not.toHaveProperty('d');
  const rebuilt = createPublicKey({ key: { ...jwk }, format: 'jwk' });
  const signature = sign('RSA-SHA256', Buffer.from('hello'), key.privateKey);
  expect(verify('RSA-SHA256', Buffer.from('hello'), rebuilt, signature)).toBe(true);
  expect(jwks([key, generateSigningKey()]).keys.map((k) => k.kid)).toHaveLength(2);
});

test('loadSigningKey accepts an RSA private key of 2048 bits or more, PKCS#8 or PKCS#1', () => {
  const pem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  expect(loadSigningKey(pem).kid).toBe(key.kid);
  const pkcs1 = key.privateKey.export({ format: 'pem', type: 'pkcs1' }).toString();
  expect(loadSigningKey(pkcs1).kid).toBe(key.kid);
});

test('loadSigningKey refuses small RSA keys, EC keys, public keys and garbage, naming the source', () => {
  const small = pkcs8(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey);
  const ec = pkcs8(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  const ed = pkcs8(generateKeyPairSync('ed25519').privateKey);
  const pub = key.publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const refusal = (pem: string, message: string): void =>
    expect(() => loadSigningKey(pem, '/etc/sky/key.pem')).toThrow(
      expect.objectContaining({ code: 'invalid_config', message: expect.stringContaining(message) }),
    );
  refusal(small, '/etc/sky/key.pem: RSA key has 1024 bits; at least 2048 are needed');
  refusal(ec, '/etc/sky/key.pem: must be an RSA private key (found ec)');
  refusal(ed, '/etc/sky/key.pem: must be an RSA private key (found ed25519)');
  refusal(pub, '/etc/sky/key.pem: not a PEM private key');
  refusal('garbage', '/etc/sky/key.pem: not a PEM private key');
  refusal('', '/etc/sky/key.pem: not a PEM private key');
  expect(() => loadSigningKey('garbage')).toThrow('signing key: not a PEM private key');
});

test('derived secrets: deterministic per key and label, distinct across labels and keys', () => {
  const other = generateSigningKey();
  const again = loadSigningKey(key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  const session = deriveSecret(key, 'session');
  expect(session).toHaveLength(32);
  expect(deriveSecret(key, 'session').equals(session)).toBe(true);
  // Another node loading the same PEM derives the same secret (SPEC §3: nodes are interchangeable).
  expect(deriveSecret(again, 'session').equals(session)).toBe(true);
  const labels = ['session', 'oauth-state', 'vault', 'refresh'].map((l) =>
    deriveSecret(key, l).toString('hex'),
  );
  expect(new Set(labels).size).toBe(4);
  expect(deriveSecret(other, 'session').equals(session)).toBe(false);
  expect(deriveSecret(key, 'vault', 64)).toHaveLength(64);
});

test('a caller scribbling on its derived secret does not change what others get', () => {
  const mine = deriveSecret(key, 'oauth-state');
  const expected = Buffer.from(mine);
  mine.fill(0);
  expect(deriveSecret(key, 'oauth-state').equals(expected)).toBe(true);
});
