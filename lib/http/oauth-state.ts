import { createHash, randomBytes } from 'node:crypto';
import type { Request } from 'express';

/** What a login carries from /sky/login to the callback. */
export interface LoginState {
  /** Absolute URL to land on (already sanitised). */
  redirect: string;
  /** The CLI's local port for a fly-style login. */
  flyPort?: number;
}

interface Pending extends LoginState {
  verifier: string;
  expiresAt: number;
}

declare module 'express-session' {
  interface SessionData {
    /** Pending logins, keyed by the SHA-256 of their state. */
    skyLogins?: Record<string, Pending>;
    /** Who this session belongs to once logged in. */
    skySubject?: string;
    /** The browser's refresh token, sealed (SPEC §8: kept server-side). */
    skyRefresh?: string;
  }
}

const STATE_TTL_MS = 10 * 60_000;
/** Several tabs may start a login at once; more than this and the oldest is dropped. */
const MAX_PENDING = 5;

const hash = (state: string): string => createHash('sha256').update(state).digest('base64url');

/**
 * passport-oauth2's state store, bound to the browser session: the state is random, single-use and
 * expires; it carries the PKCE verifier and where to land. Only its hash is kept in the session.
 */
export class SessionStateStore {
  store(
    req: Request,
    verifier: string,
    state: never,
    _meta: unknown,
    callback: (err: Error | null, state?: string) => void,
  ): void {
    if (!req.session) return callback(new Error('sky: session middleware is missing on the login route'));
    const now = Date.now();
    const pending = Object.entries(req.session.skyLogins ?? {})
      .filter(([, p]) => p.expiresAt > now)
      .sort(([, a], [, b]) => a.expiresAt - b.expiresAt)
      .slice(-(MAX_PENDING - 1));
    const handle = randomBytes(32).toString('base64url');
    req.session.skyLogins = Object.fromEntries([
      ...pending,
      [hash(handle), { ...(state as LoginState), verifier, expiresAt: now + STATE_TTL_MS }],
    ]);
    req.session.save((err) => callback(err ?? null, handle));
  }

  verify(
    req: Request,
    handle: string,
    callback: (err: Error | null, verifier: string | false, state?: never) => void,
  ): void {
    const logins = req.session?.skyLogins;
    const key = typeof handle === 'string' ? hash(handle) : '';
    const pending = logins && Object.hasOwn(logins, key) ? logins[key] : undefined;
    if (!logins || !pending) {
      return callback(null, false, { message: 'unknown or already used login state' } as never);
    }
    delete logins[key]; // single use, even when it turns out to be expired
    req.session.save((err) => {
      if (err) return callback(err, false);
      if (pending.expiresAt <= Date.now())
        return callback(null, false, { message: 'login state expired' } as never);
      const { verifier, redirect, flyPort } = pending;
      const state: LoginState = flyPort === undefined ? { redirect } : { redirect, flyPort };
      callback(null, verifier, state as never);
    });
  }
}
