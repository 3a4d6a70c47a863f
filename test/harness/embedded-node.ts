/**
 * A web node (sky() on Express) in a process of its own, started with --expose-gc, so a test can read
 * its heap after a full GC without forcing one inside the jest process. The embedded store by default,
 * or Redis when `redis` is given. Parent → child: Start; child → parent: {port}; then on 'heap' the
 * child answers {heapAfterGc, codeAfterGc} (bytes; the second is the part that is compiled code).
 */
import { getHeapSpaceStatistics } from 'node:v8';
import express from 'express';
import { sky } from '../../lib/http/router';
import { createLogger } from '../../lib/log';

export interface EmbeddedNodeStart {
  fake: { id: string; secret: string; webUrl: string; apiUrl: string };
  /** Listen here and call it the external URL (default: a free port, external URL unused). */
  port?: number;
  redis?: { url: string; prefix: string };
  /** CONCOURSE_AUTH_DURATION and SKY_REFRESH_DURATION, e.g. '30s' (a soak reaches its steady state sooner). */
  authDuration?: string;
  refreshDuration?: string;
  /** Team main's owners (default alice). */
  owners?: string[];
  /** SKY_AUDIT_MAX_EVENTS (a soak reaches the trail's bound within its warm-up). */
  auditMaxEvents?: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

process.once('message', (start: EmbeddedNodeStart) => {
  void (async () => {
    const router = sky({
      externalUrl: `http://127.0.0.1:${start.port ?? 9}`,
      bitbucketCloud: {
        clientId: start.fake.id,
        clientSecret: start.fake.secret,
        webUrl: start.fake.webUrl,
        apiUrl: start.fake.apiUrl,
      },
      mainTeam: { users: start.owners ?? ['alice'] },
      redis: start.redis ? { url: start.redis.url } : null,
      ...(start.redis ? { keyPrefix: start.redis.prefix } : {}),
      ...(start.authDuration ? { authDuration: start.authDuration } : {}),
      ...(start.refreshDuration ? { refreshDuration: start.refreshDuration } : {}),
      ...(start.auditMaxEvents ? { auditMaxEvents: start.auditMaxEvents } : {}),
      rateLimit: { perMinute: 0 },
      logger: createLogger('silent'),
    });
    await router.ready;
    const app = express();
    app.use(router);
    const server = app.listen(start.port ?? 0, '127.0.0.1', () => {
      const address = server.address();
      process.send?.({ port: typeof address === 'object' && address ? address.port : 0 });
    });
    process.on('message', (message: unknown) => {
      if (message !== 'heap' || !gc) return;
      for (let i = 0; i < 3; i++) gc();
      // Compiled code is not data a node keeps: V8 goes on optimising for minutes (a soak tells them apart).
      const code = getHeapSpaceStatistics()
        .filter((space) => space.space_name.startsWith('code'))
        .reduce((sum, space) => sum + space.space_used_size, 0);
      process.send?.({ heapAfterGc: process.memoryUsage().heapUsed, codeAfterGc: code });
    });
  })();
});
