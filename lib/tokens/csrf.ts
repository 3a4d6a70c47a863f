/**
 * Constant-time comparison of the CSRF claim with what the request sent: every code unit is compared,
 * whatever matched before, so the time taken does not tell how much of a guess was right. Only the
 * length can differ without a full compare, and every CSRF value sky issues has the same length, so it
 * tells nothing. No buffers: this runs on every cookie request that changes something.
 */
export function csrfMatches(expected: string, given: string | undefined): boolean {
  if (!expected || !given || given.length !== expected.length) return false;
  let difference = 0;
  for (let i = 0; i < expected.length; i++) difference |= expected.charCodeAt(i) ^ given.charCodeAt(i);
  return difference === 0;
}
