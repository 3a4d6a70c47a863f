import type { Identity } from '../../lib/connector';
import {
  authCookies,
  clearAuthCookies,
  generateSigningKey,
  issueToken,
  parseCookies,
  serializeCookie,
  tokenFromAuthorization,
  tokenFromCookieHeader,
  tokenFromCookies,
  TokenVerifier,
} from '../../lib/tokens';

const attrs = { path: '/ci', secure: true, expires: new Date('2030-01-01T00:00:00Z') };
const EXPIRED = 'Expires=Thu, 01 Jan 1970 00:00:00 GMT';

/** What a browser keeps after these Set-Cookie values: expired ones are dropped. */
function jar(setCookies: string[], before: Record<string, string> = {}): Record<string, string> {
  const cookies = { ...before };
  for (const line of setCookies) {
    const [pair = ''] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    if (line.includes(EXPIRED)) delete cookies[name];
    else cookies[name] = decodeURIComponent(pair.slice(eq + 1));
  }
  return cookies;
}

/** The Cookie header a browser would send, in the given order. */
const header = (cookies: [string, string][]): string =>
  cookies.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('; ');
const namesOf = (setCookies: string[]): string[] => setCookies.map((c) => c.slice(0, c.indexOf('=')));
const expiredNames = (setCookies: string[]): string[] =>
  namesOf(setCookies.filter((c) => c.includes(EXPIRED)));
/** A JWT-shaped token of about `length` characters. */
const bigToken = (length: number): string =>
  `${'h'.repeat(40)}.${'p'.repeat(length - 384)}.${'s'.repeat(342)}`;

describe('serializeCookie', () => {
  test('Path, Expires, HttpOnly, Secure and SameSite=Lax', () => {
    expect(serializeCookie('n', 'v', { ...attrs, httpOnly: true })).toBe(
      'n=v; Path=/ci; Expires=Tue, 01 Jan 2030 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax',
    );
    expect(serializeCookie('n', 'v', { ...attrs, secure: false, httpOnly: false })).toBe(
      'n=v; Path=/ci; Expires=Tue, 01 Jan 2030 00:00:00 GMT; SameSite=Lax',
    );
    expect(serializeCookie('n', '', { path: '/', secure: false, expires: new Date(0), httpOnly: true })).toBe(
      `n=; Path=/; ${EXPIRED}; HttpOnly; SameSite=Lax`,
    );
  });

  test('the value is percent-encoded, so it cannot add attributes', () => {
    expect(serializeCookie('n', 'a b;Path=/evil\r\nX: y', { ...attrs, httpOnly: true })).toMatch(
      /^n=a%20b%3BPath%3D%2Fevil%0D%0AX%3A%20y; Path=\/ci;/,
    );
  });

  test('a path that would end the cookie early is refused', () => {
    for (const path of ['/ci; Domain=evil.example', '/ci\r\nSet-Cookie: x=y', '/ci\u0000']) {
      expect(() => serializeCookie('n', 'v', { ...attrs, path, httpOnly: true })).toThrow(
        expect.objectContaining({ code: 'invalid_config' }),
      );
    }
  });
});

describe('authCookies and tokenFromCookies', () => {
  test('a small token: one HttpOnly skymarshal_auth = "bearer <jwt>", plus the HttpOnly CSRF cookie', () => {
    const set = authCookies('aaa.bbb.ccc', 'csrf1', attrs);
    expect(set).toEqual([
      'skymarshal_auth=bearer%20aaa.bbb.ccc; Path=/ci; Expires=Tue, 01 Jan 2030 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax',
      'skymarshal_csrf=csrf1; Path=/ci; Expires=Tue, 01 Jan 2030 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax',
    ]);
    expect(tokenFromCookies(jar(set))).toBe('aaa.bbb.ccc');
  });

  test('a real token with thousands of groups (~20 KB): split, every cookie ≤ 4000 bytes, joined and verified', () => {
    const key = generateSigningKey();
    const groups = Array.from({ length: 1500 }, (_, i) => `workspace-${i}/group-${i}`);
    const identity: Identity = {
      connector: 'bitbucket-cloud',
      userId: '{u}',
      accountId: 'a',
      name: 'N',
      groups,
    };
    const { token, claims } = issueToken(key, {
      issuer: 'https://ci.example.com',
      audience: 'sky',
      durationMs: 3600_000,
      identity,
      teams: { main: ['member'] },
      isAdmin: false,
      familyId: 'family-1',
    });
    expect(token.length).toBeGreaterThan(20_000);
    const set = authCookies(token, claims.csrf, attrs);
    expect(namesOf(set)).not.toContain('skymarshal_auth');
    expect(namesOf(set)).toContain('skymarshal_auth0');
    for (const line of set) {
      expect(line.split(';')[0]?.length).toBeLessThanOrEqual(4000);
      expect(line).toMatch(/; HttpOnly; Secure; SameSite=Lax$/);
    }
    const cookies = jar(set);
    expect(cookies['skymarshal_csrf']).toBe(claims.csrf);
    const joined = tokenFromCookies(parseCookies(header(Object.entries(cookies))));
    expect(joined).toBe(token);
    const verifier = new TokenVerifier({ keys: [key], issuer: 'https://ci.example.com', audience: 'sky' });
    expect(verifier.verify(joined ?? '').groups).toHaveLength(1500);
  });

  test('chunks are joined in numeric order (0, 1, 2, …, 10, 11), whatever order the header has', () => {
    const token = bigToken(50_000);
    const cookies = Object.entries(jar(authCookies(token, 'c', attrs))).filter(
      ([n]) => n !== 'skymarshal_csrf',
    );
    expect(cookies.length).toBeGreaterThan(11);
    const lexical = [...cookies].sort(([a], [b]) => (a < b ? -1 : 1));
    expect(lexical.map(([n]) => n).slice(0, 3)).toEqual([
      'skymarshal_auth0',
      'skymarshal_auth1',
      'skymarshal_auth10',
    ]);
    expect(tokenFromCookies(parseCookies(header(lexical)))).toBe(token);
    expect(tokenFromCookies(parseCookies(header([...cookies].reverse())))).toBe(token);
    const shuffled = [...cookies].sort(() => 0.5 - Math.random());
    expect(tokenFromCookies(parseCookies(header(shuffled)))).toBe(token);
  });

  test('a missing chunk (a gap, or the first) means no token at all', () => {
    const cookies = jar(authCookies(bigToken(20_000), 'c', attrs));
    const withGap = { ...cookies };
    delete withGap['skymarshal_auth2'];
    expect(tokenFromCookies(withGap)).toBeNull();
    const noFirst = { ...cookies };
    delete noFirst['skymarshal_auth0'];
    expect(tokenFromCookies(noFirst)).toBeNull();
    expect(tokenFromCookies({ skymarshal_auth1: 'bearer a.b.c' })).toBeNull();
    expect(tokenFromCookies({})).toBeNull();
    expect(tokenFromCookies({ skymarshal_csrf: 'x' })).toBeNull();
  });

  test('the "bearer " prefix is required and case-insensitive', () => {
    expect(tokenFromCookies({ skymarshal_auth: 'Bearer a.b.c' })).toBe('a.b.c');
    expect(tokenFromCookies({ skymarshal_auth: 'BEARER a.b.c' })).toBe('a.b.c');
    expect(
      tokenFromCookies({ skymarshal_auth0: 'bear', skymarshal_auth1: 'er a.b', skymarshal_auth2: '.c' }),
    ).toBe('a.b.c');
    expect(tokenFromCookies({ skymarshal_auth: 'a.b.c' })).toBeNull();
    expect(tokenFromCookies({ skymarshal_auth: 'bearer ' })).toBeNull();
    expect(tokenFromCookies({ skymarshal_auth: '' })).toBeNull();
  });

  test('more than 30 chunks is refused as invalid_request', () => {
    expect(() => authCookies(bigToken(130_000), 'c', attrs)).toThrow(
      expect.objectContaining({ code: 'invalid_request' }),
    );
  });

  test('stale chunks of an earlier, bigger token are expired; a single cookie is expired when splitting', () => {
    const previous = {
      skymarshal_auth0: 'x',
      skymarshal_auth1: 'y',
      skymarshal_auth12: 'z',
      skymarshal_csrf: 'c',
      other: 'o',
    };
    const small = authCookies('small.token.here', 'c2', attrs, previous);
    expect(expiredNames(small)).toEqual(['skymarshal_auth0', 'skymarshal_auth1', 'skymarshal_auth12']);
    expect(small.filter((c) => c.includes(EXPIRED)).every((c) => c.includes('Path=/ci'))).toBe(true);
    const after = jar(small, previous);
    expect(Object.keys(after).sort()).toEqual(['other', 'skymarshal_auth', 'skymarshal_csrf']);
    expect(tokenFromCookies(after)).toBe('small.token.here');

    const big = bigToken(12_000);
    const split = authCookies(big, 'c3', attrs, { ...after, skymarshal_auth7: 'old' });
    expect(expiredNames(split)).toEqual(['skymarshal_auth', 'skymarshal_auth7']);
    expect(tokenFromCookies(jar(split, after))).toBe(big);
  });

  test('a shrinking split token expires only the chunks it no longer writes', () => {
    const first = jar(authCookies(bigToken(20_000), 'c', attrs));
    const second = authCookies(bigToken(9_000), 'c', attrs, first);
    const written = namesOf(second).filter((n) => !expiredNames(second).includes(n));
    expect(written).toEqual(['skymarshal_auth0', 'skymarshal_auth1', 'skymarshal_auth2', 'skymarshal_csrf']);
    expect(expiredNames(second)).toEqual(['skymarshal_auth3', 'skymarshal_auth4', 'skymarshal_auth5']);
    expect(tokenFromCookies(jar(second, first))).toBe(bigToken(9_000));
  });

  test('clearAuthCookies expires skymarshal_auth, every chunk present and skymarshal_csrf, nothing else', () => {
    const previous = { skymarshal_auth0: 'x', skymarshal_auth1: 'y', skymarshal_auth10: 'z', session: 's' };
    const cleared = clearAuthCookies(previous, { path: '/ci', secure: true });
    expect(namesOf(cleared)).toEqual([
      'skymarshal_auth',
      'skymarshal_auth0',
      'skymarshal_auth1',
      'skymarshal_auth10',
      'skymarshal_csrf',
    ]);
    for (const c of cleared)
      expect(c).toMatch(new RegExp(`=; Path=/ci; ${EXPIRED}; HttpOnly; Secure; SameSite=Lax$`));
    expect(namesOf(clearAuthCookies({}, { path: '/', secure: false }))).toEqual([
      'skymarshal_auth',
      'skymarshal_csrf',
    ]);
  });
});

describe('parseCookies', () => {
  test('ordinary headers: trimming, quotes, percent-decoding, first occurrence wins', () => {
    const parsed = parseCookies(' a=1 ;b="two words";c=x%20y; a=second;d=');
    expect({ ...parsed }).toEqual({ a: '1', b: 'two words', c: 'x y', d: '' });
    expect(parseCookies(undefined)).toEqual({});
    expect(parseCookies('')).toEqual({});
  });

  test('hostile names do not reach any prototype', () => {
    const parsed = parseCookies('__proto__=x; constructor=y; hasOwnProperty=z; toString=w');
    expect(Object.getPrototypeOf(parsed)).toBeNull();
    expect(parsed['__proto__']).toBe('x');
    expect(parsed['constructor']).toBe('y');
    expect(parsed['hasOwnProperty']).toBe('z');
    expect(({} as Record<string, unknown>)['x']).toBeUndefined();
    expect(tokenFromCookies(parseCookies('__proto__=bearer%20a.b.c'))).toBeNull();
    expect(tokenFromCookies(parseCookies('toString=1; skymarshal_auth=bearer%20a.b.c'))).toBe('a.b.c');
  });

  test('malformed pieces are skipped or kept raw, never thrown', () => {
    const parsed = parseCookies('novalue; =orphan; ;;; bad=%E0%A4%A; worse=%; ok=1; "q"="');
    expect(parsed['bad']).toBe('%E0%A4%A');
    expect(parsed['worse']).toBe('%');
    expect(parsed['ok']).toBe('1');
    expect(parsed['"q"']).toBe('"');
    expect(Object.keys(parsed)).not.toContain('novalue');
    expect(Object.keys(parsed)).not.toContain('');
  });

  test('huge headers are refused unread; past 100 cookies the rest is ignored', () => {
    expect(parseCookies(`a=1; b=${'x'.repeat(200_000)}`)).toEqual({});
    const many = Array.from({ length: 150 }, (_, i) => `c${i}=${i}`).join('; ');
    const parsed = parseCookies(many);
    expect(Object.keys(parsed)).toHaveLength(100);
    expect(parsed['c99']).toBe('99');
    expect(parsed['c100']).toBeUndefined();
  });
});

describe('tokenFromAuthorization and tokenFromCookieHeader', () => {
  const key = generateSigningKey();
  const issuer = 'https://ci.example.com';
  const { token } = issueToken(key, {
    issuer,
    audience: 'sky',
    durationMs: 3600_000,
    identity: { connector: 'bitbucket-cloud', userId: '{u}', accountId: 'a', name: 'N', groups: [] },
    teams: { main: ['member'] },
    isAdmin: false,
    familyId: 'family-1',
  });
  const verifier = new TokenVerifier({ keys: [key], issuer, audience: 'sky' });

  test('Bearer, case-insensitive scheme; what follows one space is the candidate token', () => {
    expect(tokenFromAuthorization('Bearer a.b.c')).toBe('a.b.c');
    expect(tokenFromAuthorization('bearer a.b.c')).toBe('a.b.c');
    expect(tokenFromAuthorization('BEARER a.b.c')).toBe('a.b.c');
    expect(tokenFromAuthorization(' Bearer a.b.c ')).toBe('a.b.c');
    expect(tokenFromAuthorization('Basic a.b.c')).toBeNull();
    expect(tokenFromAuthorization('Bearer')).toBeNull();
    expect(tokenFromAuthorization('Bearer ')).toBeNull();
    expect(tokenFromAuthorization('Bearera.b.c')).toBeNull();
    expect(tokenFromAuthorization('')).toBeNull();
    expect(tokenFromAuthorization(undefined)).toBeNull();
  });

  test('the verifier, not the header parser, refuses anything but the compact JWT it issued', () => {
    expect(verifier.verify(tokenFromAuthorization(`Bearer ${token}`) ?? '').sub).toBe('bitbucket-cloud:{u}');
    for (const header of [
      `Bearer  ${token}`,
      `Bearer ${token} x`,
      `Bearer ${token}\tx`,
      `Bearer x ${token}`,
    ]) {
      const candidate = tokenFromAuthorization(header);
      expect(candidate).not.toBe(token);
      expect(() => verifier.verify(candidate ?? '')).toThrow(
        expect.objectContaining({ code: 'not_authorized' }),
      );
    }
  });

  test('the cookie sky writes is read without a decode; any other encoding is decoded first', () => {
    const encoded = encodeURIComponent(`bearer ${token}`);
    expect(tokenFromCookieHeader(`skymarshal_auth=${encoded}`)).toBe(token);
    expect(tokenFromCookieHeader(`a=1; skymarshal_auth="${encoded}"; b=2`)).toBe(token);
    expect(tokenFromCookieHeader(`skymarshal_auth=Bearer%20${token}`)).toBe(token);
    expect(tokenFromCookieHeader(`skymarshal_auth=%62earer%20${token}`)).toBe(token);
    expect(tokenFromCookieHeader('skymarshal_auth=bearer%20')).toBeNull();
    expect(tokenFromCookieHeader('skymarshal_auth=bearer%2')).toBeNull();
    expect(tokenFromCookieHeader(`xskymarshal_auth=${encoded}`)).toBeNull();
    // A stray escape after the prefix is decoded like any other value, and the verifier judges the result.
    const odd = tokenFromCookieHeader(`skymarshal_auth=bearer%20${token}%20x`);
    expect(odd).toBe(`${token} x`);
    expect(() => verifier.verify(odd ?? '')).toThrow(expect.objectContaining({ code: 'not_authorized' }));
  });
});
