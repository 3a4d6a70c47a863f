import { SkyError } from '../errors';

export const AUTH_COOKIE = 'skymarshal_auth';
export const CSRF_COOKIE = 'skymarshal_csrf';

/** Browsers keep about 4 KB per cookie (name + value); a bigger token is split (SPEC §7.2). */
const MAX_COOKIE_BYTES = 4000;
const MAX_CHUNKS = 30;
/** Room for 30 full chunks plus the CSRF cookie and a host app's own cookies; more is refused unread. */
const MAX_COOKIE_HEADER = 128 * 1024;
const MAX_COOKIES = 100;
/** How sky writes the auth cookie's value: `bearer <jwt>`, URI-encoded. */
const ENCODED_PREFIX = 'bearer%20';
/** A compact JWT: base64url segments and dots, so encodeURIComponent leaves every character alone. */
const COMPACT_JWT = /^[A-Za-z0-9_.-]+$/;

/** A path attribute must not end the cookie early or smuggle another attribute (RFC 6265 path-value). */
const isUsablePath = (path: string): boolean =>
  [...path].every((c) => c !== ';' && c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f);

export interface CookieAttributes {
  path: string;
  secure: boolean;
  /** When the cookie dies; `new Date(0)` clears it. */
  expires: Date;
}

/** One Set-Cookie value; SameSite=Lax always, so a cross-site POST never carries the token. */
export function serializeCookie(
  name: string,
  value: string,
  attrs: CookieAttributes & { httpOnly: boolean },
): string {
  if (!isUsablePath(attrs.path)) {
    throw new SkyError('invalid_config', `cookie path ${JSON.stringify(attrs.path)} is not usable`);
  }
  let cookie = `${name}=${encodeURIComponent(value)}; Path=${attrs.path}; Expires=${attrs.expires.toUTCString()}`;
  if (attrs.httpOnly) cookie += '; HttpOnly';
  if (attrs.secure) cookie += '; Secure';
  return `${cookie}; SameSite=Lax`;
}

const chunkName = (i: number): string => `${AUTH_COOKIE}${i}`;
/** skymarshal_auth0 … skymarshal_auth99: anything a browser might still hold from an earlier token. */
const CHUNK = new RegExp(`^${AUTH_COOKIE}(0|[1-9]\\d?)$`);
const isAuthCookie = (name: string): boolean => name === AUTH_COOKIE || CHUNK.test(name);

/** Pieces of the cookie value, each small enough that even the longest chunk name plus `=` fits. */
function chunksOf(value: string): string[] {
  const size = MAX_COOKIE_BYTES - `${chunkName(MAX_CHUNKS - 1)}=`.length - '%20'.length;
  const count = Math.ceil(value.length / size);
  if (count > MAX_CHUNKS) throw new SkyError('invalid_request', 'token too large for cookies');
  return Array.from({ length: count }, (_, i) => value.slice(i * size, (i + 1) * size));
}

/**
 * Set-Cookie values for a token and its CSRF value, both HttpOnly (SPEC §7.2). A token too big for one
 * cookie goes into skymarshal_auth0…N; auth cookies of `previous` (the request's) not rewritten are expired.
 */
export function authCookies(
  token: string,
  csrf: string,
  attrs: CookieAttributes,
  previous: Record<string, string> = {},
): string[] {
  if (!COMPACT_JWT.test(token)) throw new SkyError('internal', 'authCookies needs a compact JWT');
  const value = `bearer ${token}`;
  const fitsOne = `${AUTH_COOKIE}=${encodeURIComponent(value)}`.length <= MAX_COOKIE_BYTES;
  const written = fitsOne
    ? new Map([[AUTH_COOKIE, value]])
    : new Map(chunksOf(value).map((c, i) => [chunkName(i), c]));
  const live = { ...attrs, httpOnly: true };
  const cookies = [...written].map(([name, part]) => serializeCookie(name, part, live));
  cookies.push(serializeCookie(CSRF_COOKIE, csrf, live));
  const expired = { ...live, expires: new Date(0) };
  for (const name of Object.keys(previous)) {
    if (isAuthCookie(name) && !written.has(name)) cookies.push(serializeCookie(name, '', expired));
  }
  return cookies;
}

/** Expires skymarshal_auth, every chunk the request carried, and skymarshal_csrf. */
export function clearAuthCookies(
  previous: Record<string, string>,
  attrs: Omit<CookieAttributes, 'expires'>,
): string[] {
  const expired = { ...attrs, expires: new Date(0), httpOnly: true };
  const names = new Set([AUTH_COOKIE, ...Object.keys(previous).filter(isAuthCookie), CSRF_COOKIE]);
  return [...names].map((name) => serializeCookie(name, '', expired));
}

/**
 * A Cookie header as a null-prototype record (a cookie named `__proto__` is just a cookie). First
 * occurrence wins (the most specific path, as browsers order them); bad %-encoding is kept raw.
 */
export function parseCookies(header: string | undefined): Record<string, string> {
  const cookies = Object.create(null) as Record<string, string>;
  if (!header || header.length > MAX_COOKIE_HEADER) return cookies;
  for (const part of header.split(';', MAX_COOKIES)) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!name || Object.hasOwn(cookies, name)) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    cookies[name] = decodeCookieValue(value);
  }
  return cookies;
}

/** URI-decoded, or as it is when it is not valid URI encoding. */
function decodeCookieValue(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * What follows `bearer ` (the scheme in any case), or null. The rest is not inspected here: it is a
 * token only if the verifier says so (a compact JWT, or equal to one it verified), and scanning the
 * ~1 KB of every request's token twice cost more than the rest of a guard.
 */
function afterBearer(value: string): string | null {
  if (value.length <= 7 || value.charCodeAt(6) !== 0x20) return null;
  const scheme = value.slice(0, 6);
  return scheme === 'Bearer' || scheme.toLowerCase() === 'bearer' ? value.slice(7) : null;
}

/** The chunks joined in numeric order (0, 1, …, 10), or null when one is missing below the highest. */
function joinedChunks(cookies: Record<string, string>): string | null {
  let highest = -1;
  for (const name of Object.keys(cookies)) {
    const match = CHUNK.exec(name);
    if (match) highest = Math.max(highest, Number(match[1]));
  }
  if (highest < 0 || highest >= MAX_CHUNKS) return null;
  const parts: string[] = [];
  for (let i = 0; i <= highest; i++) {
    const part = cookies[chunkName(i)];
    if (part === undefined) return null;
    parts.push(part);
  }
  return parts.join('');
}

/** The token of skymarshal_auth, or of its chunks, without the case-insensitive `bearer ` prefix. */
export function tokenFromCookies(cookies: Record<string, string>): string | null {
  const value = Object.hasOwn(cookies, AUTH_COOKIE) ? cookies[AUTH_COOKIE] : joinedChunks(cookies);
  return value ? afterBearer(value) : null;
}

/**
 * The token of a Cookie header, as tokenFromCookies(parseCookies(header)) finds it, but without
 * building the record when the token sits in one `skymarshal_auth` cookie (every request of a browser).
 */
export function tokenFromCookieHeader(header: string | undefined): string | null {
  if (!header || header.length > MAX_COOKIE_HEADER) return null;
  const value = firstAuthCookie(header);
  if (value === undefined) return tokenFromCookies(parseCookies(header));
  // The value sky writes, `bearer%20<jwt>`, has one escape: no 1 KB decode for it.
  if (value.startsWith(ENCODED_PREFIX) && value.indexOf('%', ENCODED_PREFIX.length) === -1) {
    return value.length > ENCODED_PREFIX.length ? value.slice(ENCODED_PREFIX.length) : null;
  }
  return afterBearer(decodeCookieValue(value));
}

const AUTH_COOKIE_START = `${AUTH_COOKIE}=`;

/** The first skymarshal_auth cookie (at a cookie boundary, as parseCookies reads it), not yet decoded. */
function firstAuthCookie(header: string): string | undefined {
  for (
    let at = header.indexOf(AUTH_COOKIE_START);
    at !== -1;
    at = header.indexOf(AUTH_COOKIE_START, at + 1)
  ) {
    let before = at - 1;
    while (before >= 0 && (header[before] === ' ' || header[before] === '\t')) before--;
    if (before >= 0 && header[before] !== ';') continue;
    const end = header.indexOf(';', at);
    const value = header.slice(at + AUTH_COOKIE_START.length, end === -1 ? undefined : end).trim();
    return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
  }
  return undefined;
}

/** `Authorization: Bearer <token>`, the scheme in any case (the verifier judges the token). */
export function tokenFromAuthorization(header: string | undefined): string | null {
  return header ? afterBearer(header.trim()) : null;
}
