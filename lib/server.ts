/**
 * The web node (SPEC §1.2): CONCOURSE_* environment → app → listen. With no Bitbucket credentials it
 * starts the bundled fake Bitbucket, so `npm start` on a fresh machine gives a login that works.
 */
import { createServer, type Server } from 'node:http';
import express from 'express';
import { configWarnings, resolveConfig, type SkyOptions } from './config';
import { createLogger } from './log';
import { errorHandler, notFound } from './http/errors';
import { landing } from './http/landing';
import { sky } from './http/router';
import { FakeBitbucket } from './testing';

/** The fixture user who owns `main` when the node runs against the fake (README: log in as alice). */
export const FAKE_MAIN_OWNER = 'alice';

export interface WebNode {
  url: string;
  server: Server;
  fake: FakeBitbucket | null;
  close(): Promise<void>;
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
    options.mainTeam = { users: [FAKE_MAIN_OWNER] };
    log.warn(
      { fake: fake.url },
      `no Bitbucket Cloud credentials: using the bundled fake Bitbucket; log in as the fixture user '${FAKE_MAIN_OWNER}' (not for production)`,
    );
  }
  const router = sky({ ...options, logger: log });
  for (const warning of configWarnings(router.config)) log.warn(warning);
  await router.ready;

  const app = express();
  app.disable('x-powered-by');
  if (env['SKY_TRUST_PROXY']) app.set('trust proxy', env['SKY_TRUST_PROXY']);
  const mount = router.config.mountPath || '/';
  app.use(mount, router);
  app.get(mount, landing());
  app.use(notFound);
  app.use(errorHandler());

  const { bindIp, bindPort } = router.config;
  const server = await new Promise<Server>((resolve, reject) => {
    // Room for a token split over many cookies (thousands of groups): Node's default is 16 KiB.
    const s = createServer({ maxHeaderSize: 128 * 1024 }, app);
    s.on('error', reject).listen(bindPort, bindIp, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : bindPort;
  log.info({ externalUrl: router.config.externalUrl, bind: `${bindIp}:${port}` }, 'web node listening');
  return {
    url: `http://${bindIp === '0.0.0.0' ? '127.0.0.1' : bindIp}:${port}`,
    server,
    fake,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await router.close();
      await fake?.stop();
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
