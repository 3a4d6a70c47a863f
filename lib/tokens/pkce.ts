import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The CLI's login (SPEC §9, RFC 8252 with RFC 7636 PKCE): the CLI keeps a verifier and sends its S256
 * challenge; the browser's page shows a confirmation code derived from the challenge, which the CLI
 * prints too, so the person can see that the page serves the login their terminal started.
 */

/** 43 base64url characters: 32 random bytes (RFC 7636 §4.1 allows 43–128 unreserved characters). */
export const CODE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
/** The listener's nonce: 16–64 base64url characters. */
export const NONCE = /^[A-Za-z0-9_-]{16,64}$/;
/** RFC 7636 §4.1: 43–128 characters of [A-Za-z0-9-._~]. */
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

export function newVerifier(): string {
  return randomBytes(32).toString('base64url');
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

export function challengeOf(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

/** Whether `verifier` is the one `challenge` was made from (RFC 7636 §4.6), in constant time. */
export function verifierMatches(verifier: string, challenge: string): boolean {
  if (!VERIFIER.test(verifier) || !CODE_CHALLENGE.test(challenge)) return false;
  return timingSafeEqual(Buffer.from(challengeOf(verifier)), Buffer.from(challenge));
}

/** Crockford's base32 without I, L, O, U: nothing a person misreads. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** Eight characters, shown as `XXXX-XXXX` by the CLI and by the page it opened. */
export function confirmationCode(challenge: string): string {
  const digest = createHash('sha256').update(`sky confirmation ${challenge}`).digest();
  let code = '';
  for (let i = 0; i < 8; i++) code += ALPHABET[(digest[i] ?? 0) % 32];
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}
