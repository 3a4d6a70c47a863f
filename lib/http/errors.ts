import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import type { PageText } from '../connector';
import { isSkyError, SkyError, type SkyErrorCode } from '../errors';
import type { Metrics } from '../health/metrics';
import { createLogger, type Logger } from '../log';
import { clearAuthCookies, parseCookies } from '../tokens';
import { cookieAttributes, skyContextOf } from './context';
import { errorPage, sendPage } from './pages';
import { answerKind } from './routes';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** A request id on every request: the caller's X-Request-Id when it is sane, else a fresh one. */
export function assignRequestId(req: Request, res: Response): string {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
  req.skyRequestId = id;
  res.setHeader('X-Request-Id', id);
  return id;
}

/**
 * What a person reads on an error page for each code: the title says what happened, the hint what to
 * do next (the page offers "Log in again" and "Go to the start page" below it, or only the start page
 * where a login would not help: NO_LOGIN_OFFER). A connector's own words for a code come first.
 */
const PAGE_TEXT: Partial<Record<SkyErrorCode, PageText>> = {
  access_denied: {
    title: 'Access was not granted',
    hint: 'You are not logged in. To use this CI server, log in again and grant it access when you are asked.',
  },
  rate_limited: {
    title: 'Too many attempts',
    hint: 'Your address sent many login requests in a short time. Wait a minute, then log in again.',
  },
  invalid_state: {
    title: 'This login link is no longer valid',
    hint: 'A login link works once, in the browser that started it, for 10 minutes. Log in again from this browser.',
  },
  not_in_any_team: {
    title: 'You are not a member of any team',
    hint: 'Ask a team owner to add your account or one of your groups to a team (sky set-team), then log in again.',
  },
  not_in_allowed_teams: {
    title: 'Your groups are not allowed here',
    hint: 'Ask the operator of this CI server which group grants access, join it, then log in again.',
  },
  upstream_error: {
    title: 'The login provider answered with an error',
    hint: 'This is usually temporary. Wait a minute, then log in again; if it keeps happening, give your administrator the reference below.',
  },
  upstream_unavailable: {
    title: 'The login provider cannot be reached',
    hint: 'It may be down or unreachable from this CI server. Log in again in a few minutes.',
  },
  upstream_timeout: {
    title: 'The login provider did not answer in time',
    hint: 'It is slow right now. Wait a minute, then log in again.',
  },
  upstream_rate_limited: {
    title: 'The login provider is limiting requests',
    hint: 'Too many requests reached it. Wait a few minutes, then log in again.',
  },
  upstream_revoked: {
    title: 'The login provider refused the grant',
    hint: 'The access you granted was withdrawn. Log in again to grant it anew.',
  },
  upstream_forbidden: {
    title: 'The login provider refused a request',
    hint: 'It would not let this CI server read your account. Log in again; if it keeps happening, give your administrator the reference below.',
  },
  upstream_gone: {
    title: 'The login provider no longer offers what this CI server asked for',
    hint: 'Part of its API this server uses is gone. Tell the operator of this CI server and give them the reference below.',
  },
  store_unavailable: {
    title: 'The CI server cannot reach its database',
    hint: 'Nothing is wrong with your account. Try again in a minute; if it keeps happening, tell the operator of this CI server.',
  },
  store_full: {
    title: 'The CI server’s database is full',
    hint: 'Nothing is wrong with your account. The operator of this CI server must give its Redis more memory; try again later.',
  },
  clock_skew: {
    title: 'The CI server’s clock is wrong',
    hint: 'Nothing is wrong with your account. The operator of this CI server must fix its clock (NTP); try again later.',
  },
  invalid_request: {
    title: 'This request is not valid',
    hint: 'Check the link you followed, or start from the start page.',
  },
  not_authorized: {
    title: 'You are not logged in',
    hint: 'Your login may have expired or ended. Log in again.',
  },
  forbidden: { title: 'You do not have access', hint: 'Ask a team owner for the role you need.' },
  not_found: { title: 'Not found', hint: 'Check the address, or start from the start page.' },
  team_not_found: { title: 'No such team', hint: 'Check the team name, or start from the start page.' },
  invalid_config: {
    title: 'This CI server is misconfigured',
    hint: 'Tell its operator; the message above names the setting.',
  },
  internal: {
    title: 'Something went wrong on the CI server',
    hint: 'Try again; if it keeps happening, give your administrator the reference below.',
  },
};

/** The page text of a code: the first enabled connector's that has one, else sky's own. */
function pageText(req: Request, code: SkyErrorCode): PageText {
  for (const connector of skyContextOf(req)?.connectors ?? []) {
    const text = connector.pageText?.[code];
    if (text) return text;
  }
  return PAGE_TEXT[code] ?? { title: 'Something went wrong', hint: 'Try again later.' };
}

/** The path as sky's routers match it, one trailing slash ignored: `/sky/token/` is `/sky/token`. */
function routePath(req: Request): string {
  const path = req.path;
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/** RFC 6749 §5.2 error codes of the token endpoint; a passing outage is `temporarily_unavailable`. */
function oauthError(error: SkyError): string {
  switch (error.code) {
    case 'invalid_grant':
    case 'unsupported_grant_type':
      return error.code;
    case 'invalid_request':
    case 'payload_too_large':
      return 'invalid_request';
    case 'internal':
    case 'invalid_config':
      return 'server_error';
    default:
      return error.status >= 500 ? 'temporarily_unavailable' : 'invalid_request';
  }
}

/** The last handler under a path sky owns: an unknown route is a 404 in the shape of its neighbours. */
export const notFound: RequestHandler = (req) => {
  throw new SkyError('not_found', `no such route: ${req.method.slice(0, 20)} ${req.path.slice(0, 200)}`);
};

/** Turns anything thrown into one of our errors; unknown errors are internal and logged in full. */
export function toSkyError(err: unknown): SkyError {
  if (isSkyError(err)) return err;
  const { status, type } = (err ?? {}) as { status?: unknown; type?: unknown };
  if (status === 413) return new SkyError('payload_too_large', 'request body too large', { cause: err });
  // body-parser's failures, said in words a client can act on.
  if (type === 'entity.parse.failed')
    return new SkyError('invalid_request', 'request body is not valid JSON', { cause: err });
  if (type === 'encoding.unsupported' || type === 'charset.unsupported')
    return new SkyError('invalid_request', 'request body encoding is not supported', {
      status: 415,
      cause: err,
    });
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new SkyError('invalid_request', 'malformed request', { status, cause: err });
  }
  return new SkyError('internal', 'internal error', { cause: err });
}

/** The routes where a person logs in: a refusal there is a login refused (the metrics' reason). */
const LOGIN_ROUTE = /^\/sky\/(?:login(?:\/[^/]+)?|issuer\/callback)$/;

/** Counts what an error means to an operator: a refused login or refresh, a Redis failure (a limit counts its own 429s). */
function countError(metrics: Metrics, req: Request, error: SkyError): void {
  const route = routePath(req);
  if (error.code === 'store_unavailable' || error.code === 'store_full')
    metrics.redisErrors.inc({ where: 'request' });
  const grant = (req.body as { grant_type?: unknown } | undefined)?.grant_type;
  if (route === '/sky/token' && grant === 'refresh_token') metrics.refreshes.inc({ result: 'refused' });
  else if (LOGIN_ROUTE.test(route) || (route === '/sky/token' && grant === 'password')) {
    metrics.loginRefusals.inc({ reason: error.code });
    auditRefusal(req, error, route === '/sky/token' || req.method === 'POST');
  }
}

/**
 * A refused login in the audit trail: a wrong password (a password route's invalid_grant) as
 * `password.failure`, naming the user only when it is one the node knows (a mistyped name may be a
 * password); anything else as `login.refusal` with its reason.
 */
function auditRefusal(req: Request, error: SkyError, passwordRoute: boolean): void {
  const ctx = skyContextOf(req);
  if (!ctx) return;
  const body = (req.body ?? {}) as { username?: unknown };
  const typed = body.username;
  const user =
    typeof typed === 'string'
      ? ctx.connectors.map((c) => c.configuredUser?.(typed) ?? null).find((name) => name !== null)
      : undefined;
  const failure = passwordRoute && error.code === 'invalid_grant';
  void ctx.audit.record({
    action: failure ? 'password.failure' : 'login.refusal',
    actor: error.sub
      ? { sub: error.sub, name: '', connector: error.sub.split(':')[0] ?? '' }
      : { anonymous: true },
    requestId: req.skyRequestId,
    detail: failure
      ? {
          user: user ?? '(not a configured user)',
          address: req.ip,
        }
      : { reason: error.code, address: req.ip },
  });
}

/** Pages where logging in again changes nothing: a missing page or team, a role, a server fault. */
const NO_LOGIN_OFFER = new Set<SkyErrorCode>([
  'not_found',
  'team_not_found',
  'forbidden',
  'invalid_config',
  'store_unavailable',
  'store_full',
  'clock_skew',
  'method_not_allowed',
]);

let fallbackLog: Logger | undefined;

/**
 * The one error handler (STYLE): status + message, never a stack trace. The sky() router installs it;
 * a host app adds it after its own guarded routes to get the same answers there.
 */
export function errorHandler(): ErrorRequestHandler {
  return (err: unknown, req: Request, res: Response, next: NextFunction) => {
    const error = toSkyError(err);
    if (req.skyRequestId === undefined && !res.headersSent) assignRequestId(req, res);
    const ctx = skyContextOf(req);
    const log = ctx?.log ?? (fallbackLog ??= createLogger());
    if (ctx) countError(ctx.metrics, req, error);
    const entry = {
      reqId: req.skyRequestId,
      error: error.code,
      status: error.status,
      path: req.path,
      ...(error.sub === undefined ? {} : { sub: error.sub }),
    };
    // Why a 401 (a fixed phrase of the verifier or the guards) goes to the log only; other 4xx causes
    // stay out (a JSON parse error quotes the body it failed on).
    const reason =
      error.code === 'not_authorized' && error.cause instanceof Error ? error.cause.message : undefined;
    if (reason !== undefined) log.info({ ...entry, reason }, error.message);
    else if (error.status >= 500) log.error({ ...entry, err: error.cause ?? error }, error.message);
    else log.info(entry, error.message);
    if (res.headersSent) {
      next(err);
      return;
    }
    if (error.status === 401 && req.get('cookie') && !req.get('authorization')) {
      // A 401 to a cookie request clears the cookies (SPEC §7.2), so the browser stops sending a dead token.
      const attrs = ctx ? cookieAttributes(ctx.config) : { path: '/', secure: true };
      res.append('Set-Cookie', clearAuthCookies(parseCookies(req.get('cookie')), attrs));
    }
    if ((error.status === 503 || error.status === 429) && !res.get('Retry-After'))
      res.set('Retry-After', '60');
    // The route table says how each route answers (JSON, a page, RFC 6749); a host's routes negotiate.
    const kind = answerKind(routePath(req));
    if (kind === 'oauth') {
      res
        .status(error.status)
        .set('Cache-Control', 'no-store')
        .json({ error: oauthError(error), error_description: error.message });
      return;
    }
    if (kind === 'json' || (kind === 'negotiated' && req.accepts(['json', 'html']) === 'json')) {
      res
        .status(error.status)
        .set('Cache-Control', 'no-store')
        .json({ error: error.code, message: error.message });
      return;
    }
    const text = pageText(req, error.code);
    sendPage(
      res,
      error.status,
      errorPage({
        status: error.status,
        title: text.title,
        message: error.message,
        hint: text.hint,
        ...(NO_LOGIN_OFFER.has(error.code) ? { offerLogin: false } : {}),
        ...(req.skyRequestId ? { requestId: req.skyRequestId } : {}),
      }),
    );
  };
}
