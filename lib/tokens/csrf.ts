import { timingSafeEqual } from 'node:crypto';

/**
 * Constant-time comparison of the CSRF claim with what the request sent. Only the length can differ
 * without a full compare, and every CSRF value sky issues has the same length, so it tells nothing.
 */
export function csrfMatches(expected: string, given: string | undefined): boolean {
  if (!expected || !given || given.length !== expected.length) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
