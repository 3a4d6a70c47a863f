import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import express from 'express';
import { errorHandler } from '../../lib/http/errors';
import { landing } from '../../lib/http/landing';
import { sky, type SkyRouter, type SkyRouterOptions } from '../../lib/http/router';
import type { RedisConfig } from '../../lib/config/types';
import { createLogger } from '../../lib/log';
import { createRedisStore } from '../../lib/store';
import { parseTeamAuth } from '../../lib/teams/auth';
import { TeamStore } from '../../lib/teams/store';
import { FakeBitbucket } from '../../lib/testing';
import { freePort } from './global-setup';

export interface TestNode {
  url: string;
  externalUrl: string;
  router: SkyRouter;
  server: Server;
  /** The node's Redis key prefix. */
  prefix: string;
  /** Writes a team config straight into the node's Redis (what set-team does through the API). */
  putTeam(team: string, auth: unknown): Promise<void>;
  close(): Promise<void>;
}

/** A unique key prefix per test node, so tests on one Redis never see each other's keys. */
export function testPrefix(): string {
  return `t${randomBytes(6).toString('hex')}:`;
}

/**
 * The Redis every test uses: a Redis Cluster when the harness started one (SKY_TEST_REDIS=cluster sets
 * SKY_REDIS_CLUSTER), else REDIS_URL. Tests never build their own connection settings.
 */
export function testRedis(): RedisConfig {
  const cluster = process.env['SKY_REDIS_CLUSTER'];
  if (cluster) {
    return {
      cluster: cluster.split(',').map((node) => {
        const [host = '', port = ''] = node.split(':');
        return { host, port: Number(port) };
      }),
    };
  }
  const url = process.env['REDIS_URL'];
  if (!url) throw new Error('REDIS_URL is not set: the jest global setup should have started redis-server');
  return { url };
}

/** The same Redis as environment variables, for web nodes started as processes. */
export function testRedisEnv(): Record<string, string> {
  const cluster = process.env['SKY_REDIS_CLUSTER'];
  if (cluster) return { SKY_REDIS_CLUSTER: cluster };
  return { REDIS_URL: testRedis().url ?? '' };
}

export interface TestNodeOptions {
  fake: FakeBitbucket;
  /** Mount path, e.g. '/ci'. */
  mount?: string;
  options?: SkyRouterOptions;
  /** Listen port (default: a free one); nodes behind one public URL pass the first one's port. */
  port?: number;
  /** Host routes added after sky(). */
  routes?: (app: express.Express) => void;
}

/** A web node on a free loopback port, against real Redis and the fake Bitbucket. */
export async function startNode({
  fake,
  mount = '',
  options = {},
  routes,
  port: fixedPort,
}: TestNodeOptions): Promise<TestNode> {
  const port = fixedPort ?? (await freePort());
  const prefix = options.keyPrefix ?? testPrefix();
  const log = createLogger(process.env['TEST_LOG_LEVEL'] ?? 'silent');
  const store = createRedisStore(options.redis ?? testRedis(), prefix, log, 3600);
  const teams = new TeamStore(store.teams);
  const url = `http://127.0.0.1:${port}`;
  const router = sky({
    externalUrl: url + mount,
    bitbucketCloud: {
      clientId: fake.client.id,
      clientSecret: fake.client.secret,
      webUrl: fake.webUrl,
      apiUrl: fake.apiUrl,
      timeoutMs: 1_000,
      retries: 2,
    },
    mainTeam: { users: ['alice'] },
    redis: testRedis(),
    keyPrefix: prefix,
    logger: log,
    // Suites log in many times from one address; test/http/rate-limit.test.ts turns the limiter on.
    rateLimit: { perMinute: 0 },
    ...options,
  });
  await router.ready;
  const app = express();
  app.use(mount || '/', router);
  app.get(mount || '/', landing());
  routes?.(app);
  app.use(errorHandler());
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(port, '127.0.0.1', () => resolve(s));
  });
  return {
    url,
    externalUrl: url + mount,
    router,
    server,
    prefix,
    async putTeam(team, auth) {
      await teams.put(team, parseTeamAuth(auth));
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await router.close();
      await store.close();
    },
  };
}
