import { createHash, timingSafeEqual } from 'node:crypto';

/** Constant-time comparison of the CSRF claim with what the request sent (digests make lengths equal). */
export function csrfMatches(expected: string, given: string | undefined): boolean {
  if (!expected || !given) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}
