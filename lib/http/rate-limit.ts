import type { Request, RequestHandler, Response } from 'express';
import { SkyError } from '../errors';
import { contextOf } from './guards';

const WINDOW_MS = 60_000;

type Routes = 'login' | 'token';

/**
 * Per client IP, shared by every node through the store (SPEC §4.1): what costs something is limited
 * to `rateLimitPerMinute` a minute, then 429 with Retry-After. The client IP is Express's `req.ip`, so
 * behind a proxy set `trust proxy` (README). When the store cannot count, requests pass: the limiter
 * must not turn a Redis hiccup into an outage of its own.
 */
function limiter(routes: Routes, counts: (req: Request, res: Response) => boolean): RequestHandler {
  return async (req, res, next) => {
    const ctx = contextOf(req);
    const limit = ctx.config.rateLimitPerMinute;
    if (limit === 0) return next();
    const counted = counts(req, res);
    let hit: { count: number; resetMs: number };
    try {
      hit = counted
        ? await ctx.limits.hit(`${routes}:${req.ip ?? 'unknown'}`, WINDOW_MS)
        : await ctx.limits.peek(`${routes}:${req.ip ?? 'unknown'}`);
    } catch (err) {
      ctx.log.warn({ reqId: req.skyRequestId, err: (err as Error).message }, 'rate limit not counted');
      return next();
    }
    // Counted now, this request is among the count; peeked, it comes on top of the failures so far.
    const spent = counted ? hit.count : hit.count + 1;
    res.set({
      'RateLimit-Limit': String(limit),
      'RateLimit-Remaining': String(Math.max(0, limit - spent)),
    });
    if (spent <= limit) return next();
    const retryAfter = Math.max(1, Math.ceil(hit.resetMs / 1000));
    res.set('Retry-After', String(retryAfter));
    ctx.metrics.rateLimited.inc({ limit: routes });
    throw new SkyError(
      'rate_limited',
      `Too many ${routes === 'login' ? 'failed login' : routes} requests from your address: try again in ${retryAfter} s.`,
    );
  };
}

/** Every request counts (the token endpoint: each one may cost Bitbucket calls). */
export function rateLimit(routes: Routes): RequestHandler {
  return limiter(routes, () => true);
}

/**
 * Only failures count (the login callback: a bad state, a refused code): an office behind one address
 * logs in as often as it likes, while an address past its budget of failures is refused until the window ends.
 */
export function failureLimit(routes: Routes): RequestHandler {
  return limiter(routes, (req, res) => {
    res.once('finish', () => {
      if (res.statusCode < 400 || res.statusCode === 429) return;
      const ctx = contextOf(req);
      ctx.limits
        .hit(`${routes}:${req.ip ?? 'unknown'}`, WINDOW_MS)
        .catch((err: unknown) =>
          ctx.log.warn({ reqId: req.skyRequestId, err: (err as Error).message }, 'rate limit not counted'),
        );
    });
    return false;
  });
}

/** Failed password logins one username may have, per connector, in PASSWORD_WINDOW_MS (every address together). */
export const PASSWORD_FAILURES = 10;
const PASSWORD_WINDOW_MS = 5 * 60_000;

const passwordKey = (connector: string, username: string): string =>
  // The name as typed, capped: a long one costs no more than a short one.
  `password:${connector}:${username.slice(0, 256)}`;

/**
 * The per-user budget of failed password logins (on top of the per-address one): refused with 429 once
 * spent, whether the user exists or not, so the answer tells nothing about who exists. A guesser
 * spread over many addresses meets this one; the owner of the name waits out the window.
 */
export async function checkPasswordBudget(req: Request, connector: string, username: string): Promise<void> {
  const ctx = contextOf(req);
  let seen: { count: number; resetMs: number };
  try {
    seen = await ctx.limits.peek(passwordKey(connector, username));
  } catch (err) {
    ctx.log.warn({ reqId: req.skyRequestId, err: (err as Error).message }, 'password budget not checked');
    return;
  }
  if (seen.count < PASSWORD_FAILURES) return;
  const retryAfter = Math.max(1, Math.ceil(seen.resetMs / 1000));
  req.res?.set('Retry-After', String(retryAfter));
  ctx.metrics.rateLimited.inc({ limit: 'password' });
  throw new SkyError(
    'rate_limited',
    `Too many failed logins for this username: try again in ${retryAfter} s.`,
  );
}

/** Counts one failed password login against the username. */
export async function countPasswordFailure(req: Request, connector: string, username: string): Promise<void> {
  const ctx = contextOf(req);
  await ctx.limits
    .hit(passwordKey(connector, username), PASSWORD_WINDOW_MS)
    .catch((err: unknown) =>
      ctx.log.warn({ reqId: req.skyRequestId, err: (err as Error).message }, 'password failure not counted'),
    );
}
