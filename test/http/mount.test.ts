import express from 'express';
import type { Server } from 'node:http';
import { sky } from '../../lib/http/router';
import { createLogger } from '../../lib/log';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { freePort } from '../harness/global-setup';
import { startNode, testRedis, testPrefix } from '../harness/node';

/** `app.use('/ci', sky(o))` with an external URL ending in /ci works end to end (SPEC §4). */
let fake: FakeBitbucket;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
  fake.consentAs('alice');
});
afterAll(() => fake.stop());

test('login, cookies, landing and the API under /ci', async () => {
  const node = await startNode({ fake, mount: '/ci' });
  try {
    const browser = new Browser();
    const hops = await browser.follow(`${node.url}/ci/sky/login?redirect_uri=/ci/teams`, 3);
    const authorize = new URL(hops[0]?.location ?? '');
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${node.url}/ci/sky/issuer/callback`);
    const callback = hops[2];
    expect(callback?.status).toBe(302);
    const landed = new URL(callback?.location ?? '');
    expect(landed.pathname).toBe('/ci/teams');
    expect(callback?.setCookies.find((c) => c.startsWith('skymarshal_auth='))).toMatch(/; Path=\/ci(;|$)/);
    // The pending login travels in a cookie of the /sky path; the session starts at the callback.
    expect(hops[0]?.setCookies.find((c) => c.startsWith('sky_login_'))).toMatch(/; Path=\/ci\/sky(;|$)/);
    expect(callback?.setCookies.find((c) => c.startsWith('sky_session='))).toMatch(/; Path=\/ci\/sky(;|$)/);

    const page = await browser.request(`${node.url}/ci`);
    expect(page.status).toBe(200);
    expect(page.body).toContain('Alice Admin');
    const user = await browser.request(`${node.url}/ci/api/v1/user`);
    expect(user.status).toBe(200);

    // A redirect outside the mount path falls back to the mount root.
    const outside = await new Browser().follow(`${node.url}/ci/sky/login?redirect_uri=/elsewhere`, 3);
    expect(new URL(outside[2]?.location ?? '').pathname).toBe('/ci/');

    // Legacy routes keep the query.
    const legacy = await fetch(`${node.url}/ci/login?redirect_uri=%2Fci%2Fx`, { redirect: 'manual' });
    expect(legacy.status).toBe(302);
    expect(legacy.headers.get('location')).toBe(`${node.url}/ci/sky/login?redirect_uri=%2Fci%2Fx`);
  } finally {
    await node.close();
  }
});

test('mounted where the external URL does not say → a clear configuration error, not a broken login', async () => {
  const port = await freePort();
  const router = sky({
    externalUrl: `http://127.0.0.1:${port}/ci`,
    bitbucketCloud: {
      clientId: fake.client.id,
      clientSecret: fake.client.secret,
      webUrl: fake.webUrl,
      apiUrl: fake.apiUrl,
    },
    mainTeam: { users: ['alice'] },
    redis: testRedis(),
    keyPrefix: testPrefix(),
    logger: createLogger('silent'),
  });
  await router.ready;
  const app = express();
  app.use(router);
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(port, '127.0.0.1', () => resolve(s));
  });
  try {
    const res = await fetch(`http://127.0.0.1:${port}/sky/login`, { redirect: 'manual' });
    expect(res.status).toBe(500);
    const page = await res.text();
    expect(page).toContain('This CI server is misconfigured');
    expect(page).toContain('sky is mounted at &#39;/&#39; but the external URL');
  } finally {
    server.close();
    server.closeAllConnections();
    await router.close();
  }
});
