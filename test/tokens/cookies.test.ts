import { generateSigningKey, deriveSecret } from '../../lib/tokens';
import { authCookies, clearAuthCookies, csrfMatches, parseCookies, tokenFromAuthorization, tokenFromCookies } from '../../lib/tokens';

const attrs = { path: '/ci', secure: true, expires: new Date('2030-01-01T00:00:00Z') };

function jar(setCookies: string[]): Record<string, string> {
  const cookies: Record<string, string> = {};
  for (const line of setCookies) {
    const [pair = ''] = line.split(';');
    const eq = pair.indexOf('=');
    if (!/Expires=Thu, 01 Jan 1970/.test(line)) cookies[pair.slice(0, eq)] = decodeURIComponent(pair.slice(eq + 1));
  }
  return cookies;
}

test('a small token: one HttpOnly, SameSite=Lax, Secure cookie with the path and expiry, plus the CSRF cookie', () => {
  const set = authCookies('aaa.bbb.ccc', 'csrf1', attrs);
  expect(set).toEqual([
    'skymarshal_auth=bearer%20aaa.bbb.ccc; Path=/ci; Expires=Tue, 01 Jan 2030 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax',
    'skymarshal_csrf=csrf1; Path=/ci; Expires=Tue, 01 Jan 2030 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax',
  ]);
  expect(tokenFromCookies(jar(set))).toBe('aaa.bbb.ccc');
});

test('a 20 KB token is split over skymarshal_auth0…N, joined in numeric order whatever the header order', () => {
  const token = `${'h'.repeat(50)}.${'p'.repeat(50_000)}.${'s'.repeat(342)}`;
  const set = authCookies(token, 'c', attrs);
  const chunks = set.filter((c) => /^skymarshal_auth\d+=/.test(c));
  expect(chunks.length).toBeGreaterThan(10);
  for (const c of chunks) expect(c.length).toBeLessThan(4096);
  const cookies = jar(set);
  expect(tokenFromCookies(cookies)).toBe(token);
  const reversed = Object.entries(cookies).reverse().map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('; ');
  expect(tokenFromCookies(parseCookies(reversed))).toBe(token);
  const gap = { ...cookies };
  delete gap['skymarshal_auth3'];
  expect(tokenFromCookies(gap)).not.toBe(token);
});

test('stale chunks of an earlier, bigger token are cleared', () => {
  const previous = { skymarshal_auth0: 'x', skymarshal_auth1: 'y', skymarshal_csrf: 'c' };
  const set = authCookies('small.token.here', 'c', attrs, previous);
  expect(set.filter((c) => /Expires=Thu, 01 Jan 1970/.test(c)).map((c) => c.split('=')[0])).toEqual([
    'skymarshal_auth0',
    'skymarshal_auth1',
  ]);
  const cleared = clearAuthCookies(previous, { path: '/', secure: false });
  expect(cleared.map((c) => c.split('=')[0]).sort()).toEqual(['skymarshal_auth', 'skymarshal_auth0', 'skymarshal_auth1', 'skymarshal_csrf']);
});

test('parseCookies is safe with hostile headers', () => {
  const parsed = parseCookies('__proto__=x; constructor=y; a=%E0%A4%A; a=second; =novalue; b="quoted"');
  expect(Object.getPrototypeOf(parsed)).toBeNull();
  expect(parsed['a']).toBe('%E0%A4%A');
  expect(parsed['b']).toBe('quoted');
  expect(({} as Record<string, unknown>)['x']).toBeUndefined();
  expect(parseCookies('a=1'.padEnd(70_000, 'x'))).toEqual({});
});

test('Authorization: Bearer, case-insensitive scheme, exactly one token', () => {
  expect(tokenFromAuthorization('Bearer a.b.c')).toBe('a.b.c');
  expect(tokenFromAuthorization('bearer a.b.c')).toBe('a.b.c');
  expect(tokenFromAuthorization('BEARER a.b.c')).toBe('a.b.c');
  expect(tokenFromAuthorization('Basic a.b.c')).toBeNull();
  expect(tokenFromAuthorization('Bearer a b')).toBeNull();
  expect(tokenFromAuthorization('Bearer')).toBeNull();
});

test('csrfMatches compares in constant time and refuses empty values', () => {
  expect(csrfMatches('abc', 'abc')).toBe(true);
  expect(csrfMatches('abc', 'abd')).toBe(false);
  expect(csrfMatches('abc', undefined)).toBe(false);
  expect(csrfMatches('abc', '')).toBe(false);
  expect(csrfMatches('', '')).toBe(false);
});

test('derived secrets: deterministic per key and label, distinct otherwise', () => {
  const k1 = generateSigningKey();
  const k2 = generateSigningKey();
  expect(deriveSecret(k1, 'session').equals(deriveSecret(k1, 'session'))).toBe(true);
  expect(deriveSecret(k1, 'session').equals(deriveSecret(k1, 'vault'))).toBe(false);
  expect(deriveSecret(k1, 'session').equals(deriveSecret(k2, 'session'))).toBe(false);
  expect(deriveSecret(k1, 'session')).toHaveLength(32);
});
