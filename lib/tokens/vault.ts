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
  private readonly key: Buffer;

  /** @param label the key's HKDF label: each use of sealing gets a key of its own. */
  constructor(signingKey: SigningKey, label = 'vault') {
    this.key = deriveSecret(signingKey, label);
  }

  seal(plain: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv).setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${VERSION}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  /** The plain text, or a SkyError when the value was tampered with, moved, or sealed under another key. */
  open(sealed: string, context: string): string {
    const [version, iv, body] = sealed.split('.');
    const ivBytes = Buffer.from(iv ?? '', 'base64url');
    const bytes = Buffer.from(body ?? '', 'base64url');
    if (version !== VERSION || ivBytes.length !== IV_BYTES || bytes.length < TAG_BYTES) throw unreadable();
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, ivBytes).setAAD(Buffer.from(context));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      return Buffer.concat([
        decipher.update(bytes.subarray(0, bytes.length - TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch (err) {
      throw unreadable(err);
    }
  }
}

function unreadable(cause?: unknown): SkyError {
  return new SkyError('invalid_grant', 'a stored grant cannot be opened (another signing key, or tampered)', {
    cause,
  });
}
