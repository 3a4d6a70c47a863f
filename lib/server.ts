/**
 * The web node (SPEC §1.2): CONCOURSE_* environment → app → listen. With no Bitbucket credentials it
 * starts the bundled fake Bitbucket, so `npm start` on a fresh machine gives a login that works.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { configWarnings, resolveConfig, type SkyOptions } from './config';
import { createLogger } from './log';
import type { Readiness } from './health/watch';
import { errorHandler, notFound } from './http/errors';
import { landing } from './http/landing';
import { sky } from './http/router';
import { SkyError } from './errors';
import { FakeBitbucket } from './testing';

/** After the last answer of a shutdown, idle connections stay open this long for requests already sent. */
const LINGER_MS = 300;
/** How long an idle keep-alive connection stays open. */
const KEEP_ALIVE_MS = 65_000;
/** A shutdown takes new connections this long after the signal (those already on their way). */
const ACCEPT_DRAIN_MS = 100;

/** The fixture user who owns `main` when the node runs against the fake (README: log in as alice). */
export const FAKE_MAIN_OWNER = 'alice';

export interface WebNode {
  url: string;
  server: Server;
  fake: FakeBitbucket | null;
  /**
   * Graceful shutdown (SPEC §12): stops accepting, lets in-flight requests finish for up to `graceMs`
   * (SKY_SHUTDOWN_GRACE), cuts what is left, gives up refresh leases, closes Redis, logs one line.
   */
  close(graceMs?: number): Promise<{ finished: number; cut: number }>;
}

export async function startWebNode(env: Record<string, string | undefined> = process.env): Promise<WebNode> {
  const base = resolveConfig({ env });
  const log = createLogger(base.logLevel);
  let fake: FakeBitbucket | null = null;
  const options: SkyOptions = { env };
  if (!base.bitbucketCloud) {
    fake = await FakeBitbucket.start();
    options.bitbucketCloud = {
      clientId: fake.client.id,
      clientSecret: fake.client.secret,
      webUrl: fake.webUrl,
      apiUrl: fake.apiUrl,
    };
    // The fixture user owns main unless the environment names main's owners itself.
    let who = 'team main is owned as the environment says';
    if (!base.mainTeam) {
      options.mainTeam = { users: [FAKE_MAIN_OWNER] };
      who = `log in as the fixture user '${FAKE_MAIN_OWNER}'`;
    }
    log.warn(
      { fake: fake.url },
      `no Bitbucket Cloud credentials: using the bundled fake Bitbucket; ${who} (a demonstration, not for production)`,
    );
  }
  const router = sky({ ...options, logger: log });
  for (const warning of configWarnings(router.config, { fake: fake !== null })) log.warn(warning);
  try {
    await router.ready;
  } catch (err) {
    await router.close();
    await fake?.stop();
    throw err;
  }

  const app = express();
  app.disable('x-powered-by');
  let stopping = false;
  if (env['SKY_TRUST_PROXY']) app.set('trust proxy', env['SKY_TRUST_PROXY']);
  const mount = router.config.mountPath || '/';
  // Probes for load balancers and orchestrators: alive, and able to serve (with why not).
  app.get(`${router.config.mountPath}/healthz`, (_req, res) => {
    res.set('Cache-Control', 'no-store').json({ status: 'ok' });
  });
  app.get(`${router.config.mountPath}/readyz`, (_req, res) => {
    // A node that is shutting down takes no new work: the balancer should send it elsewhere.
    const readiness: Readiness = stopping
      ? { status: 'unavailable', reasons: ['shutting down: this node finishes its requests and stops'] }
      : router.readiness();
    res
      .status(readiness.status === 'unavailable' ? 503 : 200)
      .set('Cache-Control', 'no-store')
      .json(readiness);
  });
  app.get(`${router.config.mountPath}/metrics`, (_req, res, next) => {
    router.metrics.metrics().then((text) => {
      res.set('Content-Type', router.metrics.contentType).send(text);
    }, next);
  });
  // Browsers ask every page's host for an icon: an empty answer, cached, not a 404 in the log.
  app.get('/favicon.ico', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=86400').status(204).end();
  });
  app.use(mount, router);
  app.get(mount, landing());
  app.use(notFound);
  app.use(errorHandler());

  // In-flight requests, so a shutdown can let them finish and count what it had to cut.
  const inFlight = new Set<ServerResponse>();
  let lastActivity = 0;
  const { bindIp, bindPort } = router.config;
  const server = await new Promise<Server>((resolve, reject) => {
    // Room for a token split over many cookies (thousands of groups): Node's default is 16 KiB.
    const s = createServer({ maxHeaderSize: 128 * 1024 }, (req, res) => {
      inFlight.add(res);
      lastActivity = Date.now();
      if (stopping) res.shouldKeepAlive = false;
      res.once('close', () => {
        inFlight.delete(res);
        lastActivity = Date.now();
      });
      app(req, res);
    });
    // Idle keep-alive connections outlive a load balancer's idle timeout (AWS ALB: 60 s), so the node
    // never closes one that the balancer (or any client) is about to reuse.
    s.keepAliveTimeout = KEEP_ALIVE_MS;
    s.headersTimeout = KEEP_ALIVE_MS + 1_000;
    s.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new SkyError(
              'invalid_config',
              `CONCOURSE_BIND_PORT: ${bindIp}:${bindPort} is already in use by another process: stop it, or choose another port with CONCOURSE_BIND_PORT (and CONCOURSE_EXTERNAL_URL)`,
            )
          : err,
      );
    }).listen(bindPort, bindIp, () => resolve(s));
  }).catch(async (err: unknown) => {
    await router.close();
    await fake?.stop();
    throw err;
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : bindPort;
  log.info({ externalUrl: router.config.externalUrl, bind: `${bindIp}:${port}` }, 'web node listening');
  return {
    url: `http://${bindIp === '0.0.0.0' ? '127.0.0.1' : bindIp}:${port}`,
    server,
    fake,
    async close(graceMs = router.config.shutdownGraceMs) {
      const started = Date.now();
      stopping = true;
      // Connections a client opened just before the signal may still wait in the kernel's accept queue
      // (closing the listener would reset them): they are taken for a moment longer, each answer ending
      // its connection. Then no new connections. net's close, not http's: http's also drops idle
      // keep-alive connections at once, and a request a client is sending on one would meet a reset.
      await sleep(ACCEPT_DRAIN_MS);
      const closed = new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()));
      // Answers still to be written end their connection, as does any request that still arrives.
      for (const res of inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
      const waiting = inFlight.size;
      const deadline = started + graceMs;
      // In flight: wait (bounded). Then a short quiet time for requests already on their way.
      while (Date.now() < deadline && (inFlight.size > 0 || Date.now() - lastActivity < LINGER_MS)) {
        await sleep(25);
      }
      const cut = inFlight.size;
      server.closeAllConnections();
      await closed;
      await router.close();
      await fake?.stop();
      const finished = waiting - cut;
      log.info({ finished, cut, ms: Date.now() - started }, 'web node stopped');
      return { finished, cut };
    },
  };
}

if (require.main === module) {
  startWebNode().then(
    (node) => {
      const stop = () => {
        node.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    },
    (err: unknown) => {
      // One clear line: the configuration error names the setting.
      console.error(`sky: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
