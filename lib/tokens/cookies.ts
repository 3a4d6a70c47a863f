import { SkyError } from '../errors';

export const AUTH_COOKIE = 'skymarshal_auth';
export const CSRF_COOKIE = 'skymarshal_csrf';

/** Browsers keep about 4 KB per cookie; a bigger token (thousands of groups) is split (SPEC §7.2). */
const MAX_COOKIE_BYTES = 4000;
const MAX_CHUNKS = 30;
const MAX_COOKIE_HEADER = 64 * 1024;
const MAX_COOKIES = 100;

export interface CookieAttributes {
  path: string;
  secure: boolean;
  expires: Date;
}

export function serializeCookie(name: string, value: string, attrs: CookieAttributes & { httpOnly: boolean }): string {
  let cookie = `${name}=${encodeURIComponent(value)}; Path=${attrs.path}; Expires=${attrs.expires.toUTCString()}`;
  if (attrs.httpOnly) cookie += '; HttpOnly';
  if (attrs.secure) cookie += '; Secure';
  return cookie + '; SameSite=Lax';
}

const chunkName = (i: number): string => `${AUTH_COOKIE}${i}`;
const CHUNK = new RegExp(`^${AUTH_COOKIE}(0|[1-9]\\d?)$`);

/** Set-Cookie values for a token and its CSRF value; stale chunks of an earlier, bigger token are cleared. */
export function authCookies(
  token: string,
  csrf: string,
  attrs: CookieAttributes,
  previous: Record<string, string> = {},
): string[] {
  const value = `bearer ${token}`;
  const cookies: string[] = [];
  const set = new Set<string>();
  const add = (name: string, raw: string): void => {
    set.add(name);
    cookies.push(serializeCookie(name, raw, { ...attrs, httpOnly: true }));
  };
  // JWT characters need no encoding, so the raw length is the cookie length (plus the encoded space).
  const size = MAX_COOKIE_BYTES - AUTH_COOKIE.length - 8;
  if (value.length <= size) {
    add(AUTH_COOKIE, value);
  } else {
    const count = Math.ceil(value.length / size);
    if (count > MAX_CHUNKS) throw new SkyError('invalid_request', 'token too large for cookies');
    for (let i = 0; i < count; i++) add(chunkName(i), value.slice(i * size, (i + 1) * size));
  }
  cookies.push(serializeCookie(CSRF_COOKIE, csrf, { ...attrs, httpOnly: true }));
  const expired = { ...attrs, expires: new Date(0) };
  for (const name of Object.keys(previous)) {
    if ((name === AUTH_COOKIE || CHUNK.test(name)) && !set.has(name)) {
      cookies.push(serializeCookie(name, '', { ...expired, httpOnly: true }));
    }
  }
  return cookies;
}

/** Expires the auth cookie, every chunk present, and the CSRF cookie. */
export function clearAuthCookies(previous: Record<string, string>, attrs: Omit<CookieAttributes, 'expires'>): string[] {
  const expired = { ...attrs, expires: new Date(0), httpOnly: true };
  const names = new Set([AUTH_COOKIE, CSRF_COOKIE, ...Object.keys(previous).filter((n) => CHUNK.test(n))]);
  return [...names].map((name) => serializeCookie(name, '', expired));
}

/** A Cookie header as a null-prototype record; first occurrence wins; bad %-encoding is kept raw. */
export function parseCookies(header: string | undefined): Record<string, string> {
  const cookies = Object.create(null) as Record<string, string>;
  if (!header || header.length > MAX_COOKIE_HEADER) return cookies;
  let count = 0;
  for (const part of header.split(';')) {
    if (++count > MAX_COOKIES) break;
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!name || name in cookies) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      cookies[name] = decodeURIComponent(value);
    } catch {
      cookies[name] = value;
    }
  }
  return cookies;
}

const BEARER = /^bearer (\S+)$/i;

/** The token from skymarshal_auth, or its chunks joined in numeric order (a gap means no token). */
export function tokenFromCookies(cookies: Record<string, string>): string | null {
  let value = cookies[AUTH_COOKIE];
  if (value === undefined) {
    const parts: string[] = [];
    for (let i = 0; i < MAX_CHUNKS; i++) {
      const part = cookies[chunkName(i)];
      if (part === undefined) break;
      parts.push(part);
    }
    if (parts.length === 0) return null;
    value = parts.join('');
  }
  return BEARER.exec(value)?.[1] ?? null;
}

/** `Authorization: Bearer <jwt>`, scheme case-insensitive. */
export function tokenFromAuthorization(header: string | undefined): string | null {
  if (!header) return null;
  return BEARER.exec(header.trim())?.[1] ?? null;
}
