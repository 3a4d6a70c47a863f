import type { RequestHandler } from 'express';
import { SkyError } from '../errors';
import { clearAuthCookies, parseCookies, tokenFromCookies } from '../tokens';
import { cookieAttributes } from './context';
import { assignRequestId } from './errors';
import { contextOf, currentAccess } from './guards';
import { loginChoices } from './login';
import { landingPage, loginPage, sendPage } from './pages';

/**
 * The web node's landing page at `/` (SPEC §4.6): who you are, your teams and roles, log out; the
 * login page when the browser holds no valid token. Mount it after sky().
 */
export function landing(): RequestHandler {
  return async (req, res, next) => {
    const ctx = contextOf(req);
    if (req.skyRequestId === undefined) assignRequestId(req, res);
    const base = ctx.config.externalUrl;
    let access: Awaited<ReturnType<typeof currentAccess>>;
    try {
      access = await currentAccess(req);
    } catch (err) {
      if (err instanceof SkyError && err.code === 'not_authorized') {
        // A dead token cookie (expired, revoked) is dropped here too, not only on the next API 401.
        const cookies = parseCookies(req.headers.cookie);
        if (tokenFromCookies(cookies))
          res.append('Set-Cookie', clearAuthCookies(cookies, cookieAttributes(ctx.config)));
        // A login started here lands here (the default redirect_uri): nothing to carry.
        // After a logout (its redirect says so), the page says it happened.
        const notice =
          req.query['logged_out'] === '1'
            ? 'You are logged out: that login has ended on every node of this CI server.'
            : undefined;
        sendPage(
          res,
          200,
          loginPage({ choices: loginChoices(ctx.connectors, base, {}), ...(notice ? { notice } : {}) }),
        );
        return;
      }
      next(err);
      return;
    }
    const { claims, teams, admin } = access;
    sendPage(
      res,
      200,
      landingPage({
        name: claims.name,
        userName: claims.user_name,
        userId: claims.user_id,
        email: claims.email,
        isAdmin: admin,
        teams,
        expiresAt: claims.exp,
        logoutUrl: `${base}/sky/logout`,
        csrf: claims.csrf,
      }),
    );
  };
}
