import express, { type RequestHandler } from 'express';
import session from 'express-session';
import { Passport } from 'passport';
import type { Registry } from 'prom-client';
import { Clock } from '../clock';
import { callbackUrl, requireReady, resolveConfig, type SkyOptions } from '../config';
import type { Config } from '../config/types';
import type { Identity } from '../connector';
import { enabledConnectors, mainTeamWarnings } from '../connectors';
import { SkyError } from '../errors';
import { createLogger, withRequestId, type Logger } from '../log';
import { AuditTrail, personActor } from '../audit/trail';
import { Metrics } from '../health/metrics';
import { StoreWatch, type Readiness } from '../health/watch';
import { createStore, type Store } from '../store';
import { parseTeamAuth } from '../teams/auth';
import { TeamStore } from '../teams/store';
import {
  clearAuthCookies,
  deriveSecret,
  generateSigningKey,
  issueToken,
  jwks,
  loadSigningKey,
  loadVerifyingKey,
  openingKeys,
  parseCookies,
  TokenVerifier,
  type SigningKey,
} from '../tokens';
import { AutomationTokens } from '../tokens/automation';
import { Grants, type LoginFamily } from '../tokens/grants';
import { subjectOf } from '../tokens/jwt';
import { CurrentGroups } from '../tokens/groups';
import { Revocations } from '../tokens/revocations';
import { attachContext, cookieAttributes, type Issued, type SkyContext } from './context';
import { assignRequestId, errorHandler, notFound } from './errors';
import { OWN_PATH, mountRoutes } from './routes';
import { discovery, info } from './operations';
import { apiHandlers, checkTeamParam } from './api';
import { authenticate, presentedToken } from './guards';
import { callback, flyConsent, login, passwordLogin } from './login';
import { LoginStateCookies } from './login-state';
import { logoutPage, sendPage } from './pages';
import { failureLimit, rateLimit } from './rate-limit';
import { tokenEndpoint } from './token';

export interface SkyRouterOptions extends SkyOptions {
  /** A pino logger to use instead of sky's own. */
  logger?: Logger;
}

/** What sky() returns: Express middleware for `app.use()`, plus start-up and shut-down. */
export interface SkyRouter extends RequestHandler {
  readonly config: Config;
  /** Resolves when `main` is written and revocations are loaded; rejects when the store is unreachable or unsafe. */
  readonly ready: Promise<void>;
  /** sky's Prometheus metrics (prom-client), for the host's /metrics. */
  readonly metrics: Registry;
  /** What /readyz answers: ready, degraded (serving; see reasons) or unavailable. */
  readiness(): Readiness;
  /** Stops the store checks, gives up refresh leases, closes the store. */
  close(): Promise<void>;
}

/**
 * sky(options): the routes of SPEC §4 as one Express router, to mount where the external URL's path
 * says (`app.use('/ci', sky(o))` for https://ci.example.com/ci).
 */
export function sky(options: SkyRouterOptions = {}): SkyRouter {
  const { logger, ...skyOptions } = options;
  const config = resolveConfig(skyOptions);
  requireReady(config);
  const log = logger ?? createLogger(config.logLevel);
  const key: SigningKey = config.signingKeyPem ? loadSigningKey(config.signingKeyPem) : generateSigningKey();
  // A rotation (README): previous keys verify tokens and, when private, open what they sealed; none signs.
  const previousKeys = config.previousKeyPems
    .map(({ pem, source }) => loadVerifyingKey(pem, source))
    .filter((k) => k.kid !== key.kid);
  const verifyingKeys = [key, ...previousKeys];
  const keys = openingKeys(key, previousKeys);
  const metrics = new Metrics();
  const store: Store = createStore(config, log, () => metrics.redisErrors.inc({ where: 'connection' }));
  const teams = new TeamStore(store.teams);
  const clock = new Clock();
  const revocations = new Revocations(store.revocations, {
    graceMs: config.outageGraceMs,
    tokenLifetimeMs: config.authDurationMs,
    clock,
    revoked: (kind) => metrics.revocations.inc({ kind }),
  });
  const watch = new StoreWatch({
    store,
    teams,
    revocations,
    mainTeam: parseTeamAuth(config.mainTeam),
    clock,
    metrics,
    log,
    checks: config.redisChecks,
  });
  const audit = new AuditTrail({
    records: store.audit,
    log,
    clock,
    retentionMs: config.auditRetentionMs,
    maxEvents: config.auditMaxEvents,
  });
  const automationTokens = new AutomationTokens({
    records: store.automationTokens,
    revocations,
    keys,
    clock,
    log,
    expired: (token) =>
      void audit.record({
        action: 'token.expire',
        actor: { system: true },
        team: token.team,
        detail: { name: token.name, role: token.role },
      }),
  });
  const unsubscribe = store.subscribe((event) => {
    teams.handle(event);
    automationTokens.handle(event);
    groups.handle(event);
    Promise.resolve(revocations.handle(event))
      .catch((err: unknown) =>
        log.warn({ err }, 'could not reload revocations after a reconnect: retrying every second'),
      )
      .finally(() => watch.handle(event));
  });
  const loginStates = new LoginStateCookies(keys, config, store.singleUse);
  const connectors = enabledConnectors(config, {
    log,
    metrics,
    callbackURL: callbackUrl(config),
    loginStates,
  });
  for (const connector of connectors) for (const warning of connector.warnings ?? []) log.warn(warning);
  const mainUsers = Object.values(config.mainTeam ?? {}).flatMap((members) => members.users);
  for (const warning of mainTeamWarnings(mainUsers, connectors)) log.warn(warning);
  const passport = new Passport();
  for (const connector of connectors) passport.use(connector.id, connector.strategy);
  // The slowest connector's upstream calls bound a refresh's wait on another node's lease.
  const upstream = connectors.reduce(
    (slowest, c) => (c.upstream && c.upstream.timeoutMs > slowest.timeoutMs ? c.upstream : slowest),
    { timeoutMs: 1_000, retries: 0 },
  );
  const grants = new Grants({
    keys,
    records: store.grants,
    codes: store.singleUse,
    sessions: store.sessions,
    connectors,
    revocations,
    refreshTtlSeconds: Math.ceil(config.refreshDurationMs / 1000),
    upstreamTimeoutMs: upstream.timeoutMs,
    log,
    audit,
  });
  const groups = new CurrentGroups({
    maxAgeMs: config.groupsMaxAgeMs,
    tokenLifetimeMs: config.authDurationMs,
    upstreamBudgetMs: upstream.timeoutMs * (upstream.retries + 1) * 2 + 2_000 * upstream.retries,
    records: store.grants,
    leases: store.singleUse,
    grants,
    log,
    clock,
  });
  const ctx: SkyContext = {
    config,
    connectors,
    log,
    teams,
    revocations,
    grants,
    groups,
    limits: store.rateLimits,
    automationTokens,
    audit,
    metrics,
    verifier: new TokenVerifier({
      keys: verifyingKeys,
      issuer: config.externalUrl,
      audience: config.audience,
      now: () => clock.now(),
    }),
    issue,
  };
  let started = false;
  let starting: Promise<void> | null = null;
  /**
   * Subscribes, checks what sky needs of Redis, writes main, loads revocations (StoreWatch); after a
   * failure (Redis down at start) the next request tries again.
   */
  const start = (): Promise<void> =>
    (starting ??= (async () => {
      await watch.start();
      started = true;
    })().catch((err: unknown) => {
      starting = null;
      throw err;
    }));
  const ready = start();
  ready.catch((err: unknown) => log.error({ err }, 'sky could not start'));

  async function issue(
    identity: Identity,
    family: () => Promise<LoginFamily>,
    fresh = false,
  ): Promise<Issued> {
    clock.assertCanIssue();
    const teamRoles = await teams.teamsOf(identity);
    if (Object.keys(teamRoles).length === 0) {
      // The page names the account that tried: a person with several accounts sees which one it was.
      const connector = connectors.find((c) => c.id === identity.connector);
      const account = identity.userName || identity.accountId;
      const named = identity.name && identity.name !== account ? ` (${identity.name})` : '';
      const where = connector?.login === 'redirect' ? ` to ${connector.displayName}` : '';
      throw new SkyError(
        'not_in_any_team',
        `You logged in${where} as ${account}${named}, and that account is not a member of any team on this CI server.`,
        { sub: subjectOf(identity) },
      );
    }
    const { familyId, refreshToken } = await family();
    const { token, claims } = issueToken(key, {
      issuer: config.externalUrl,
      audience: config.audience,
      durationMs: config.authDurationMs,
      identity,
      teams: teamRoles,
      isAdmin: teamRoles['main']?.includes('owner') ?? false,
      familyId,
      now: clock.now(),
    });
    // The family is committed (a refresh token spent): from here on nothing may turn into an error,
    // or the client would hold neither its old token nor the new one. Sharing the groups is a courtesy
    // to other nodes (they re-read when theirs are too old), so a failure to save them is only logged.
    if (fresh) {
      await groups.remember(claims.sub, identity.groups, claims.iat * 1000).catch((err: unknown) => {
        log.warn({ err, sub: claims.sub }, 'could not share the groups read at this login with other nodes');
      });
    }
    log.info({ sub: claims.sub, jti: claims.jti, teams: Object.keys(teamRoles).length }, 'token issued');
    return refreshToken === undefined ? { token, claims } : { token, claims, refreshToken };
  }

  const sessions = session({
    name: 'sky_session',
    store: store.sessions,
    // The first signs the session cookie; every one verifies (express-session's secret list).
    secret: keys.map((k) => deriveSecret(k, 'session').toString('base64url')),
    resave: false,
    saveUninitialized: false,
    cookie: {
      path: `${config.mountPath}/sky`,
      httpOnly: true,
      sameSite: 'lax',
      secure: config.cookieSecure,
      // The session keeps the browser's refresh token, so it lives as long as that.
      maxAge: config.refreshDurationMs,
    },
  });

  // Case-sensitive like Concourse's routes: /SKY/LOGIN is not sky's (and would miss the session's cookie path).
  const router = express.Router({ caseSensitive: true });

  const logoutRoute = logout(ctx);
  const form = express.urlencoded({ extended: false, limit: '4kb', parameterLimit: 10 });
  // A password connector's form: a password up to 1 MB gets the same refusal as any wrong one, not a 413.
  const passwordForm = express.urlencoded({ extended: false, limit: '1100kb', parameterLimit: 10 });
  router.param('team', checkTeamParam);
  mountRoutes(router, {
    'GET /sky/login': [sessions, login(passport, loginStates)],
    'POST /sky/login/:connector': [failureLimit('login'), passwordForm, sessions, passwordLogin(passport)],
    'GET /sky/issuer/callback': [failureLimit('login'), sessions, callback(passport, loginStates)],
    'GET /sky/issuer/keys': [
      (_req, res) => {
        res.set('Cache-Control', 'public, max-age=300').json(jwks(verifyingKeys));
      },
    ],
    'GET /.well-known/openid-configuration': [discovery(ctx)],
    'GET /api/v1/info': [info(ctx)],
    'POST /sky/fly': [form, flyConsent],
    'GET /sky/logout': [sessions, logoutRoute],
    'POST /sky/logout': [form, sessions, logoutRoute],
    'POST /sky/token': [rateLimit('token'), ...tokenEndpoint()],
    'GET /login': [legacy(config, '/sky/login')],
    'GET /logout': [legacy(config, '/sky/logout')],
    ...apiHandlers(),
  });
  router.all('/sky/{*rest}', notFound);
  const handleError = errorHandler();
  router.use(handleError);

  /**
   * Every request gets the context (for the guards) and a request id. Only sky's own paths enter its
   * routes, with the id on every log line however deep; a host app's request goes straight on (a router's
   * `next('router')` would cost it a trip through the event loop).
   */
  const mounted: RequestHandler = (req, res, next) => {
    attachContext(req, ctx);
    if (req.baseUrl !== config.mountPath) {
      const where = `sky is mounted at '${req.baseUrl || '/'}' but the external URL ${config.externalUrl} says '${config.mountPath || '/'}'`;
      handleError(new SkyError('invalid_config', where), req, res, next);
      return;
    }
    // A host route's answer carries a request id only when sky answers it (an error); sky's own always.
    const own = OWN_PATH.test(req.path);
    if (started && !own) return next();
    const go = (): void => {
      if (own) withRequestId(assignRequestId(req, res), res, () => router(req, res, next));
      else next();
    };
    if (started) return go();
    start().then(go, (err: unknown) =>
      handleError(
        new SkyError('store_unavailable', 'sky is not ready: its store cannot be reached', { cause: err }),
        req,
        res,
        next,
      ),
    );
  };
  return Object.assign(mounted, {
    config,
    ready,
    metrics: metrics.registry,
    readiness: () => watch.readiness(),
    close: async () => {
      unsubscribe();
      watch.stop();
      await ready.catch(() => undefined);
      await automationTokens.close();
      await grants.releaseLeases();
      await store.close();
    },
  });
}

function legacy(config: Config, to: string): RequestHandler {
  return (req, res) => {
    const query = req.originalUrl.indexOf('?');
    res.redirect(302, `${config.externalUrl}${to}${query === -1 ? '' : req.originalUrl.slice(query)}`);
  };
}

/**
 * POST /sky/logout, and GET with a Bearer token as Concourse (SPEC §4.3): ends the token's login family
 * on every node. A GET with cookies only could come from any site's link: it asks instead.
 */
function logout(ctx: SkyContext): RequestHandler {
  return async (req, res) => {
    const claims = authenticate(req);
    if ((req.method === 'GET' || req.method === 'HEAD') && presentedToken(req)?.viaCookie) {
      sendPage(
        res,
        200,
        logoutPage({
          name: claims.name || claims.user_name || claims.user_id,
          actionUrl: `${ctx.config.externalUrl}/sky/logout`,
          csrf: claims.csrf,
        }),
      );
      return;
    }
    // Every token of the login, its refresh token and its session end together.
    await ctx.grants.end(claims.sid);
    const sessionId = req.session?.id;
    await new Promise<void>((resolve, reject) =>
      req.session
        ? req.session.destroy((err) =>
            err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
          )
        : resolve(),
    );
    if (sessionId !== undefined) await ctx.grants.forgetSession(claims.sub, sessionId);
    res.append(
      'Set-Cookie',
      clearAuthCookies(parseCookies(req.headers.cookie), cookieAttributes(ctx.config)),
    );
    res.set('Cache-Control', 'no-store');
    ctx.log.info({ reqId: req.skyRequestId, sub: claims.sub, jti: claims.jti }, 'logout');
    await ctx.audit.record({ action: 'logout', actor: personActor(claims), requestId: req.skyRequestId });
    if (req.accepts(['json', 'html']) === 'html')
      res.redirect(303, `${ctx.config.externalUrl}/?logged_out=1`);
    else res.status(204).end();
  };
}
