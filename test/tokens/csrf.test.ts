import fc from 'fast-check';
import { csrfMatches } from '../../lib/tokens';

test('csrfMatches: equal values match; anything else, empty or missing does not', () => {
  const csrf = 'Zx8-Q1w_0123456789abcdefghijklmnopqrstuvwxy';
  expect(csrfMatches(csrf, csrf)).toBe(true);
  expect(csrfMatches(csrf, `${csrf}x`)).toBe(false);
  expect(csrfMatches(csrf, csrf.slice(1))).toBe(false);
  expect(csrfMatches(csrf, csrf.toUpperCase())).toBe(false);
  expect(csrfMatches(csrf, undefined)).toBe(false);
  expect(csrfMatches(csrf, '')).toBe(false);
  expect(csrfMatches('', '')).toBe(false);
  expect(csrfMatches('', undefined)).toBe(false);
});

test('property: csrfMatches agrees with string equality for non-empty values of any length', () => {
  fc.assert(
    fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (a, b) => {
      expect(csrfMatches(a, b)).toBe(a === b);
      expect(csrfMatches(a, a)).toBe(true);
    }),
  );
});
