/**
 * An embedded web node (sky() with the in-memory store) in a process of its own, started with
 * --expose-gc, so a test can read its heap after a full GC without forcing one inside the jest process.
 * Parent → child: {fake: {id, secret, webUrl, apiUrl}}; child → parent: {port}; then on 'heap' the
 * child answers {heapAfterGc} (bytes).
 */
import express from 'express';
import { sky } from '../../lib/http/router';
import { createLogger } from '../../lib/log';

interface Start {
  fake: { id: string; secret: string; webUrl: string; apiUrl: string };
}

const gc = (globalThis as { gc?: () => void }).gc;

process.once('message', (start: Start) => {
  void (async () => {
    const router = sky({
      env: {},
      externalUrl: 'http://127.0.0.1:9',
      bitbucketCloud: {
        clientId: start.fake.id,
        clientSecret: start.fake.secret,
        webUrl: start.fake.webUrl,
        apiUrl: start.fake.apiUrl,
      },
      mainTeam: { users: ['alice'] },
      redis: null,
      rateLimit: { perMinute: 0 },
      logger: createLogger('silent'),
    });
    await router.ready;
    const app = express();
    app.use(router);
    const server = app.listen(0, '127.0.0.1', () => {
      const address = server.address();
      process.send?.({ port: typeof address === 'object' && address ? address.port : 0 });
    });
    process.on('message', (message: unknown) => {
      if (message !== 'heap' || !gc) return;
      for (let i = 0; i < 3; i++) gc();
      process.send?.({ heapAfterGc: process.memoryUsage().heapUsed });
    });
  })();
});
