import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SkyError } from '../errors';
import { deriveSecret, type SigningKey } from './keys';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Secrets at rest (SPEC §8): AES-256-GCM under a key derived from the signing key, so every node that
 * shares the key can open what another sealed. The context (a user's subject, say) is authenticated
 * data: a sealed value moved to another user's record does not open.
 */
export class Vault {
  private readonly keys: Buffer[];

  /**
   * @param signingKeys the signing key, which seals, then previous private keys (a rotation), which
   *   still open what they sealed.
   * @param label the key's HKDF label: each use of sealing gets a key of its own.
   */
  constructor(signingKeys: SigningKey | readonly SigningKey[], label = 'vault') {
    this.keys = (Array.isArray(signingKeys) ? signingKeys : [signingKeys]).map((k: SigningKey) =>
      deriveSecret(k, label),
    );
  }

  seal(plain: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys[0] as Buffer, iv).setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${VERSION}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  /** The plain text, or a SkyError when the value was tampered with, moved, or sealed under another key. */
  open(sealed: string, context: string): string {
    const [version, iv, body] = sealed.split('.');
    const ivBytes = Buffer.from(iv ?? '', 'base64url');
    const bytes = Buffer.from(body ?? '', 'base64url');
    if (version !== VERSION || ivBytes.length !== IV_BYTES || bytes.length < TAG_BYTES) throw unreadable();
    let failure: unknown;
    for (const key of this.keys) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, ivBytes).setAAD(Buffer.from(context));
        decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
        return Buffer.concat([
          decipher.update(bytes.subarray(0, bytes.length - TAG_BYTES)),
          decipher.final(),
        ]).toString('utf8');
      } catch (err) {
        failure = err;
      }
    }
    throw unreadable(failure);
  }
}

function unreadable(cause?: unknown): SkyError {
  return new SkyError('invalid_grant', 'a stored grant cannot be opened (another signing key, or tampered)', {
    cause,
  });
}
