import type { RequestHandler } from 'express';
import { SkyError } from '../errors';
import { contextOf } from './guards';

const WINDOW_MS = 60_000;

/**
 * Per client IP, shared by every node through the store (SPEC §11, abuse): the login routes and the
 * token endpoint each allow `rateLimitPerMinute` requests a minute, then 429 with Retry-After. The
 * client IP is Express's `req.ip`, so behind a proxy set `trust proxy` (README). When the store cannot
 * count, requests pass: the limiter must not turn a Redis hiccup into an outage of its own.
 */
export function rateLimit(routes: 'login' | 'token'): RequestHandler {
  return async (req, res, next) => {
    const ctx = contextOf(req);
    const limit = ctx.config.rateLimitPerMinute;
    if (limit === 0) return next();
    let hit: { count: number; resetMs: number };
    try {
      hit = await ctx.limits.hit(`${routes}:${req.ip ?? 'unknown'}`, WINDOW_MS);
    } catch (err) {
      ctx.log.warn({ reqId: req.skyRequestId, err: (err as Error).message }, 'rate limit not counted');
      return next();
    }
    const retryAfter = Math.max(1, Math.ceil(hit.resetMs / 1000));
    res.set({
      'RateLimit-Limit': String(limit),
      'RateLimit-Remaining': String(Math.max(0, limit - hit.count)),
    });
    if (hit.count <= limit) return next();
    res.set('Retry-After', String(retryAfter));
    throw new SkyError(
      'rate_limited',
      `Too many ${routes} requests from your address: try again in ${retryAfter} s.`,
    );
  };
}
