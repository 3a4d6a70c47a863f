import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { FakeBitbucket } from '../../lib/testing';
import { freePort } from '../harness/global-setup';
import { cliLoginAs, loginAs, tokenRequest } from '../harness/login';
import { startNode } from '../harness/node';

/**
 * What an operator and another service read off a node (SPEC §12): /api/v1/info in Concourse's shape, the
 * OpenID discovery document at the token issuer, and previous signing keys in the JWKS.
 */
let fake: FakeBitbucket;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
afterAll(() => fake.stop());

const VERSION = (
  JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }
).version;

const pem = (): { privatePem: string; publicPem: string } => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
};

test('GET /api/v1/info answers Concourse’s shape without a login', async () => {
  const node = await startNode({ fake, options: { clusterName: 'prod ci' } });
  try {
    const res = await fetch(`${node.url}/api/v1/info`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      version: VERSION,
      external_url: node.externalUrl,
      cluster_name: 'prod ci',
    });
    const post = await fetch(`${node.url}/api/v1/info`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
  } finally {
    await node.close();
  }
});

test('a token verifies with jose through the discovery document and the JWKS only (mounted at /ci)', async () => {
  const node = await startNode({ fake, mount: '/ci' });
  try {
    const issuer = node.externalUrl;
    expect(issuer).toMatch(/\/ci$/);
    const res = await fetch(`${issuer}/.well-known/openid-configuration`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    expect(doc).toMatchObject({
      issuer,
      jwks_uri: `${issuer}/sky/issuer/keys`,
      token_endpoint: `${issuer}/sky/token`,
      authorization_endpoint: `${issuer}/sky/login`,
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['code'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
    });
    const alice = await loginAs(issuer, fake, 'alice');
    // Only what the document says: jose fetches the JWKS from jwks_uri and checks iss and aud.
    const keys = createRemoteJWKSet(new URL(String(doc['jwks_uri'])));
    const { payload, protectedHeader } = await jwtVerify(alice.token, keys, {
      issuer: String(doc['issuer']),
      audience: 'sky',
      algorithms: doc['id_token_signing_alg_values_supported'] as string[],
    });
    expect(protectedHeader.alg).toBe('RS256');
    expect(payload.sub).toMatch(/^bitbucket-cloud:\{[0-9a-f-]+\}$/);
    expect(payload['name']).toBe('Alice Admin');
    // The discovery path of the root is not sky's when sky is mounted below it.
    expect((await fetch(`${node.url}/.well-known/openid-configuration`)).status).toBe(404);
  } finally {
    await node.close();
  }
});

test('previous keys verify and are in the JWKS; a public one verifies tokens but opens no refresh token', async () => {
  const old = pem();
  const next = pem();
  // One external URL throughout (the tokens' issuer): each node in turn on the same port.
  const port = await freePort();
  const before = await startNode({ fake, port, options: { signingKey: old.privatePem } });
  let token: string;
  let refreshToken: string;
  let oldKid: string;
  try {
    ({ token, refreshToken } = await cliLoginAs(before.url, fake, 'alice'));
    oldKid = String(decodeProtectedHeader(token).kid);
  } finally {
    await before.close();
  }
  // Same Redis prefix as before (the login's family lives there); the new key signs, the old one only verifies.
  const publicOnly = await startNode({
    fake,
    port,
    options: { keyPrefix: before.prefix, signingKey: next.privatePem, previousSigningKeys: [old.publicPem] },
  });
  try {
    const jwks = (await (await fetch(`${publicOnly.url}/sky/issuer/keys`)).json()) as {
      keys: { kid: string }[];
    };
    expect(jwks.keys.map((k) => k.kid)).toHaveLength(2);
    expect(jwks.keys[1]?.kid).toBe(oldKid);
    const user = await fetch(`${publicOnly.url}/api/v1/user`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(user.status).toBe(200);
    // A public key cannot open what the old key hashed: the refresh token is unknown here (README says so).
    const refused = await tokenRequest(publicOnly.url, {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
    });
    expect(refused.status).toBe(400);
    expect(refused.body['error']).toBe('invalid_grant');
  } finally {
    await publicOnly.close();
  }
  const withPrivate = await startNode({
    fake,
    port,
    options: { keyPrefix: before.prefix, signingKey: next.privatePem, previousSigningKeys: [old.privatePem] },
  });
  try {
    const refreshed = await tokenRequest(withPrivate.url, {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
    });
    expect(refreshed.status).toBe(200);
    const fresh = String(refreshed.body['access_token']);
    expect(decodeProtectedHeader(fresh).kid).not.toBe(oldKid);
    const user = await fetch(`${withPrivate.url}/api/v1/user`, {
      headers: { authorization: `Bearer ${fresh}` },
    });
    expect(user.status).toBe(200);
    // The rotated refresh token is hashed with the new key and redeems again.
    const again = await tokenRequest(withPrivate.url, {
      grant_type: 'refresh_token',
      refresh_token: String(refreshed.body['refresh_token']),
    });
    expect(again.status).toBe(200);
  } finally {
    await withPrivate.close();
  }
});

test('a previous key that is not an RSA key of 2048 bits is refused at construction, naming the option', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const small = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  await expect(startNode({ fake, options: { previousSigningKeys: [small] } })).rejects.toThrow(
    'option previousSigningKeys[0]: RSA key has 1024 bits; at least 2048 are needed',
  );
  await expect(startNode({ fake, options: { previousSigningKeys: ['not a key'] } })).rejects.toThrow(
    'option previousSigningKeys[0]: not a PEM public or private key',
  );
});
