import { RedisStore } from 'connect-redis';
import express, { type Express, type Request, type RequestHandler, type Response } from 'express';
import session from 'express-session';
import { Redis } from 'ioredis';
import { getHeapSpaceStatistics } from 'node:v8';
import { Passport } from 'passport';
import { errorHandler, requiresTeamRole, sky } from '../lib';
import { createLogger } from '../lib/log';
import { MEMORY_ROUTE, PASSPORT_LOGIN_ROUTE, ROUTE, type NodeSpec } from './spec';

/** A bench web node's app and what to close on shut-down. */
export interface BenchApp {
  app: Express;
  close(): Promise<void>;
}

/** The host route every variant serves: what the guards protect, as small as a real handler gets. */
const pipelines = (req: Request, res: Response): void => {
  res.json({ team: req.params['team'], pipelines: [] });
};

/** Memory as the OS and V8 see it; `?gc=1` collects first (nodes of the memory scenario run --expose-gc). */
const memory: RequestHandler = (req, res) => {
  if (req.query['gc'] === '1') globalThis.gc?.();
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));
  res.json({ ...process.memoryUsage(), spaces });
};

export async function buildApp(spec: NodeSpec, externalUrl: string): Promise<BenchApp> {
  const app = express();
  app.get(MEMORY_ROUTE, memory);
  if (spec.variant === 'bare') {
    app.get(ROUTE, pipelines);
    app.post(ROUTE, pipelines);
    return { app, close: async () => undefined };
  }
  if (spec.variant === 'sky') return skyApp(app, spec, externalUrl);
  return passportApp(app, spec);
}

/** sky as a host app mounts it (README): the router first, then its own routes behind the guards. */
async function skyApp(app: Express, spec: NodeSpec, externalUrl: string): Promise<BenchApp> {
  const router = sky({
    externalUrl,
    bitbucketCloud: {
      clientId: spec.fake.clientId,
      clientSecret: spec.fake.clientSecret,
      webUrl: spec.fake.url,
      apiUrl: spec.fake.url,
      includeTeamGroups: spec.includeTeamGroups ?? false,
      getWorkspacePermissions: spec.getWorkspacePermissions ?? false,
    },
    mainTeam: { users: ['alice'] },
    redis: { url: spec.redisUrl },
    keyPrefix: spec.prefix,
    ...(spec.groupsMaxAge ? { groupsMaxAge: spec.groupsMaxAge } : {}),
    // Every login of the bench comes from 127.0.0.1: the per-IP limit would answer 429 after 60 a minute.
    rateLimit: { perMinute: 0 },
    logger: createLogger('error'),
  });
  await router.ready;
  app.use(router);
  app.get(ROUTE, requiresTeamRole('viewer'), pipelines);
  app.post(ROUTE, requiresTeamRole('viewer'), pipelines);
  app.use(errorHandler());
  return { app, close: () => router.close() };
}

interface BenchUser {
  id: string;
  name: string;
}

const RANK: Record<string, number> = { viewer: 1, 'pipeline-operator': 2, member: 3, owner: 4 };

/**
 * The common way: express-session in Redis (connect-redis), passport.session() with a deserializeUser
 * that reads the user record, `req.isAuthenticated()`, and the team role looked up in Redis per request.
 */
async function passportApp(app: Express, spec: NodeSpec): Promise<BenchApp> {
  const redis = new Redis(spec.redisUrl);
  const passport = new Passport();
  const userKey = (id: string): string => `${spec.prefix}user:${id}`;
  const rolesKey = (team: string): string => `${spec.prefix}team:${team}:roles`;
  passport.serializeUser((user, done) => done(null, (user as BenchUser).id));
  passport.deserializeUser((id: string, done) => {
    redis.get(userKey(id)).then(
      (json) => done(null, json ? (JSON.parse(json) as BenchUser) : false),
      (err: unknown) => done(err),
    );
  });
  app.use(
    session({
      store: new RedisStore({ client: redis, prefix: `${spec.prefix}sess:` }),
      secret: 'bench-session-secret',
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax', maxAge: 24 * 3600_000 },
    }),
  );
  app.use(passport.initialize());
  app.use(passport.session());
  // Where the app's OAuth callback would end: the user record and a role exist, then req.login().
  app.post(PASSPORT_LOGIN_ROUTE, async (req, res, next) => {
    const user: BenchUser = { id: 'bob', name: 'Bob Builder' };
    await redis.set(userKey(user.id), JSON.stringify(user));
    await redis.hset(rolesKey('bench'), user.id, 'viewer');
    req.login(user, (err) => (err ? next(err) : res.json({ ok: true })));
  });
  const requireTeamRole =
    (role: string): RequestHandler =>
    async (req, res, next) => {
      if (!req.isAuthenticated()) {
        res.status(401).json({ error: 'not authorized' });
        return;
      }
      const held = await redis.hget(rolesKey(String(req.params['team'])), (req.user as BenchUser).id);
      if (!held || (RANK[held] ?? 0) < (RANK[role] ?? Infinity)) {
        res.status(403).json({ error: 'forbidden' });
        return;
      }
      next();
    };
  app.get(ROUTE, requireTeamRole('viewer'), pipelines);
  app.post(ROUTE, requireTeamRole('viewer'), pipelines);
  return {
    app,
    close: async () => {
      await redis.quit();
    },
  };
}
