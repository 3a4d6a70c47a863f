import { createHash, randomBytes } from 'node:crypto';
import type { Request } from 'express';
import type { Config } from '../config/types';
import type { PkceStateStore, PkceVerified } from '../connector';
import type { SingleUseRecords } from '../store';
import { parseCookies, serializeCookie, type SigningKey } from '../tokens';
import { Vault } from '../tokens/vault';

/** What a login carries from /sky/login to the callback. */
export interface LoginState {
  /** Absolute URL to land on (already sanitised). */
  redirect: string;
  /** The CLI's local port for a fly-style login. */
  flyPort?: number;
  /** The sky CLI's PKCE challenge (S256) and its listener's nonce (RFC 8252); absent for a bare fly. */
  cli?: { challenge: string; nonce: string };
}

/** The sealed content of one pending login's cookie. */
interface Pending {
  /** SHA-256 of the state handle that Bitbucket hands back. */
  h: string;
  /** The PKCE verifier of the upstream authorization. */
  v: string;
  s: LoginState;
  /** Epoch ms when this login attempt ends. */
  e: number;
}

declare module 'express-session' {
  interface SessionData {
    /** Who this session belongs to once logged in. */
    skySubject?: string;
    /** The browser's refresh token, sealed (SPEC §8: kept server-side). */
    skyRefresh?: string;
  }
}

export const STATE_TTL_MS = 10 * 60_000;
/** Several tabs may start a login at once; more than this and the oldest attempt is dropped. */
const MAX_PENDING = 4;
const COOKIE = /^sky_login_[A-Za-z0-9_-]{16}$/;

const hash = (state: string): string => createHash('sha256').update(state).digest('base64url');
const cookieName = (stateHash: string): string => `sky_login_${stateHash.slice(0, 16)}`;

/**
 * passport-oauth2's state store without server-side state (SPEC §4.1): each pending login travels in a
 * cookie of its own, sealed with AES-256-GCM under a key derived from the signing key, HttpOnly on the
 * /sky path, for 10 minutes. It carries the PKCE verifier and where to land. An anonymous visitor leaves
 * nothing in Redis or in memory; at the callback the state is spent once on every node (a mark that
 * dies with the attempt), and the cookie is cleared.
 */
export class LoginStateCookies implements PkceStateStore {
  private readonly vault: Vault;
  /** What the login a request begins carries, until passport-oauth2 asks `store` for its handle. */
  private readonly beginning = new WeakMap<Request, LoginState>();

  constructor(
    key: SigningKey | readonly SigningKey[],
    private readonly config: Pick<Config, 'mountPath' | 'cookieSecure'>,
    private readonly spent: SingleUseRecords,
  ) {
    this.vault = new Vault(key, 'login-state');
  }

  private cookie(req: Request, name: string, value: string, expires: Date): void {
    const attrs = {
      path: `${this.config.mountPath}/sky`,
      secure: this.config.cookieSecure,
      httpOnly: true,
      expires,
    };
    req.res?.append('Set-Cookie', serializeCookie(name, value, attrs));
  }

  private open(name: string, value: string): Pending | null {
    try {
      return JSON.parse(this.vault.open(value, `login-state ${name}`)) as Pending;
    } catch {
      return null;
    }
  }

  /** /sky/login begins a login that carries `state`; passport-oauth2 then calls `store` for this request. */
  begin(req: Request, state: LoginState): void {
    this.beginning.set(req, state);
  }

  store(
    req: Request,
    verifier: string,
    _state: unknown,
    _meta: unknown,
    callback: (err: Error | null, handle?: string) => void,
  ): void {
    const state = this.beginning.get(req);
    this.beginning.delete(req);
    if (!state) return callback(new Error('no login was begun for this request'));
    const now = Date.now();
    const cookies = parseCookies(req.headers.cookie);
    // Attempts this browser started before, oldest first; unreadable ones count as the oldest.
    const earlier = Object.entries(cookies)
      .filter(([name]) => COOKIE.test(name))
      .map(([name, value]) => ({ name, ends: this.open(name, value)?.e ?? 0 }))
      .sort((a, b) => a.ends - b.ends);
    for (const { name } of earlier.slice(0, Math.max(0, earlier.length - (MAX_PENDING - 1)))) {
      this.cookie(req, name, '', new Date(0));
    }
    const handle = randomBytes(32).toString('base64url');
    const h = hash(handle);
    const name = cookieName(h);
    const pending: Pending = { h, v: verifier, s: state, e: now + STATE_TTL_MS };
    this.cookie(
      req,
      name,
      this.vault.seal(JSON.stringify(pending), `login-state ${name}`),
      new Date(pending.e),
    );
    callback(null, handle);
  }

  verify(req: Request, handle: string, callback: PkceVerified): void {
    const refuse = (message: string): void => callback(null, false, { message });
    if (typeof handle !== 'string' || handle.length > 128)
      return refuse('This login link is damaged. Start the login again.');
    const h = hash(handle);
    const name = cookieName(h);
    const value = parseCookies(req.headers.cookie)[name];
    if (value === undefined)
      return refuse(
        'This login was already finished, or it was started in another browser. Start the login again in this browser.',
      );
    this.cookie(req, name, '', new Date(0)); // single use in this browser, whatever comes next
    const pending = this.open(name, value);
    if (!pending || pending.h !== h)
      return refuse(
        'This login cannot be read: it was started in another browser, or before the CI server changed its key. Start the login again.',
      );
    const left = pending.e - Date.now();
    if (left <= 0) return refuse('This login was started more than 10 minutes ago. Start it again.');
    // Spent on every node: a copied cookie and state cannot be replayed while they would still be valid.
    this.spent.put(`state:${h}`, '', left).then(
      (fresh) =>
        fresh
          ? callback(null, pending.v, pending.s)
          : refuse('This login was already finished once. Start the login again if you need to.'),
      (err: unknown) => callback(err as Error, false),
    );
  }

  /** Ends the attempt a callback names (an error from Bitbucket), so its cookie does not linger. */
  forget(req: Request, handle: unknown): void {
    if (typeof handle !== 'string' || handle.length > 128) return;
    const name = cookieName(hash(handle));
    if (parseCookies(req.headers.cookie)[name] !== undefined) this.cookie(req, name, '', new Date(0));
  }
}
