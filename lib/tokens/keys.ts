import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from 'node:crypto';
import { SkyError } from '../errors';

export interface PublicJwk {
  kty: 'RSA';
  n: string;
  e: string;
  kid: string;
  alg: 'RS256';
  use: 'sig';
}

/** A key tokens are verified with: sky's signing key, or a previous one (a public key, or a private one). */
export interface VerifyingKey {
  kid: string;
  publicKey: KeyObject;
  publicJwk: PublicJwk;
  privateKey?: KeyObject;
}

export interface SigningKey extends VerifyingKey {
  privateKey: KeyObject;
}

/** The keys a node opens what it sealed with: the signing key first (it seals), then previous private keys. */
export function openingKeys(signing: SigningKey, previous: readonly VerifyingKey[]): SigningKey[] {
  return [signing, ...previous.filter((k): k is SigningKey => k.privateKey !== undefined)];
}

/** @param kind what the source must be, for the message ("private key" for a signing key). */
function fromPublicKey(publicKey: KeyObject, source: string, kind = 'key'): VerifyingKey {
  if (publicKey.asymmetricKeyType !== 'rsa') {
    throw new SkyError(
      'invalid_config',
      `${source}: must be an RSA ${kind} (found ${publicKey.asymmetricKeyType ?? 'unknown'})`,
    );
  }
  const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048) {
    throw new SkyError('invalid_config', `${source}: RSA key has ${bits} bits; at least 2048 are needed`);
  }
  const { n, e } = publicKey.export({ format: 'jwk' });
  if (typeof n !== 'string' || typeof e !== 'string') {
    throw new SkyError('invalid_config', `${source}: unreadable RSA key`);
  }
  const kid = thumbprint(n, e);
  return { kid, publicKey, publicJwk: { kty: 'RSA', n, e, kid, alg: 'RS256', use: 'sig' } };
}

function fromPrivateKey(privateKey: KeyObject, source: string): SigningKey {
  return { ...fromPublicKey(createPublicKey(privateKey), source, 'private key'), privateKey };
}

/** RFC 7638 JWK thumbprint: SHA-256 over the required members in lexical order, base64url. */
export function thumbprint(n: string, e: string): string {
  return createHash('sha256')
    .update(JSON.stringify({ e, kty: 'RSA', n }))
    .digest('base64url');
}

export function loadSigningKey(pem: string, source = 'signing key'): SigningKey {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new SkyError('invalid_config', `${source}: not a PEM private key`, { cause: err });
  }
  return fromPrivateKey(key, source);
}

/**
 * A previous key (SKY_PREVIOUS_SIGNING_KEYS): it verifies tokens but signs none. A private PEM keeps its
 * private half, so what it sealed still opens; a public PEM verifies only.
 */
export function loadVerifyingKey(pem: string, source = 'previous signing key'): VerifyingKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(pem);
    } catch (err) {
      throw new SkyError('invalid_config', `${source}: not a PEM public or private key`, { cause: err });
    }
    return fromPublicKey(publicKey, source);
  }
  return fromPrivateKey(privateKey, source);
}

export function generateSigningKey(): SigningKey {
  return fromPrivateKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'generated key');
}

export function jwks(keys: readonly VerifyingKey[]): { keys: PublicJwk[] } {
  return { keys: keys.map((k) => k.publicJwk) };
}

const derived = new WeakMap<KeyObject, Map<string, Buffer>>();

/**
 * Every secret a node needs derives from the signing key (SPEC §3), so nodes sharing the key agree on
 * them: HKDF-SHA256 over the key's PKCS#8 DER, one label per use.
 */
export function deriveSecret(
  key: SigningKey,
  label: 'session' | 'oauth-state' | 'vault' | 'refresh' | (string & Record<never, never>),
  length = 32,
): Buffer {
  let byLabel = derived.get(key.privateKey);
  if (!byLabel) derived.set(key.privateKey, (byLabel = new Map<string, Buffer>()));
  const id = `${label}/${length}`;
  let secret = byLabel.get(id);
  if (!secret) {
    const ikm = key.privateKey.export({ format: 'der', type: 'pkcs8' });
    secret = Buffer.from(hkdfSync('sha256', ikm, 'sky', `sky ${label}`, length));
    byLabel.set(id, secret);
  }
  // A copy, so a caller that scribbles on its buffer cannot change every other user's secret.
  return Buffer.from(secret);
}
