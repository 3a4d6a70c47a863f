import { generateKeyPairSync } from 'node:crypto';
import { fork } from 'node:child_process';
import path from 'node:path';
import { loadSigningKey } from '../../lib/tokens';
import { Vault } from '../../lib/tokens/vault';
import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { startNode, type TestNode } from '../harness/node';
import { PrivateRedis } from '../harness/redis-server';

/**
 * No state before authentication (SPEC §4.1, issue #13): the pending login travels in a sealed cookie,
 * so an anonymous visitor leaves nothing in Redis or in memory; the cookie is single use, expires, and
 * opens only on the nodes that share the signing key. And the callback's error text is sky's own.
 */
const pem = (): string =>
  generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
const signingKey = pem();

let fake: FakeBitbucket;
let redis: PrivateRedis;
let node: TestNode;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  fake.consentAs('alice');
  redis = await PrivateRedis.start();
  node = await startNode({ fake, options: { signingKey, redis: { url: redis.url } } });
});
afterAll(async () => {
  await node.close();
  await redis.stop();
  await fake.stop();
});

/** Sends `count` anonymous GET /sky/login, `parallel` at a time; every one must be a 302 to Bitbucket. */
async function anonymousLogins(base: string, count: number, parallel = 20): Promise<void> {
  const redirect = `/builds?${'x'.repeat(1500)}`; // a long landing URL, as in the report
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const res = await fetch(`${base}/sky/login?redirect_uri=${encodeURIComponent(redirect)}`, {
        redirect: 'manual',
      });
      await res.arrayBuffer();
      if (res.status !== 302) throw new Error(`GET /sky/login answered ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

test('10,000 anonymous GET /sky/login write nothing to Redis (DBSIZE unchanged)', async () => {
  const before = Number(await redis.command(['DBSIZE']));
  await anonymousLogins(node.url, 10_000);
  expect(Number(await redis.command(['DBSIZE']))).toBe(before);
}, 120_000);

test('an embedded node’s heap after GC stays within +10 MB over 10,000 anonymous GET /sky/login', async () => {
  // Its own process, started with --expose-gc: the jest process never forces a GC itself.
  const child = fork(path.join(__dirname, '../harness/embedded-node.ts'), {
    execArgv: ['--expose-gc', '--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const next = <T>(): Promise<T> => new Promise((resolve) => child.once('message', (m) => resolve(m as T)));
  try {
    const started = next<{ port: number }>();
    child.send({
      fake: { id: fake.client.id, secret: fake.client.secret, webUrl: fake.webUrl, apiUrl: fake.apiUrl },
    });
    const base = `http://127.0.0.1:${(await started).port}`;
    const heap = async (): Promise<number> => {
      const answer = next<{ heapAfterGc: number }>();
      child.send('heap');
      return (await answer).heapAfterGc;
    };
    await anonymousLogins(base, 500); // warm up: JIT, sockets, caches of a first request
    const before = await heap();
    await anonymousLogins(base, 10_000);
    const grown = ((await heap()) - before) / 1024 / 1024;
    expect(grown).toBeLessThan(10);
  } finally {
    child.kill('SIGKILL');
  }
}, 120_000);

/** A login started in `browser`: its callback URL (with Bitbucket's code and sky's state). */
async function startLogin(browser = new Browser(), base = node.url): Promise<URL> {
  const start = await browser.request(`${base}/sky/login`);
  expect(start.setCookies.find((c) => c.startsWith('sky_login_'))).toMatch(/; Path=\/sky; Expires=/);
  expect(start.setCookies.some((c) => c.startsWith('sky_session='))).toBe(false);
  const authorize = await browser.request(start.location ?? '');
  return new URL(authorize.location ?? '');
}

const loginCookie = (browser: Browser): [string, string] => {
  const entry = [...browser.jar].find(([name]) => name.startsWith('sky_login_'));
  if (!entry) throw new Error('no login cookie in the jar');
  return entry;
};

describe('the sealed login cookie', () => {
  test('a normal login spends it: the callback clears it and starts the session', async () => {
    const browser = new Browser();
    const callback = await browser.request((await startLogin(browser)).href);
    expect(callback.status).toBe(302);
    expect(callback.setCookies.find((c) => c.startsWith('sky_login_'))).toMatch(/Expires=Thu, 01 Jan 1970/);
    expect(callback.setCookies.some((c) => c.startsWith('sky_session='))).toBe(true);
    expect([...browser.jar.keys()].some((name) => name.startsWith('sky_login_'))).toBe(false);
  });

  test('tampered → 400, no call to Bitbucket', async () => {
    const browser = new Browser();
    const url = await startLogin(browser);
    const [name, value] = loginCookie(browser);
    const flipped = value.slice(0, -3) + (value.slice(-3, -2) === 'A' ? 'B' : 'A') + value.slice(-2);
    browser.jar.set(name, flipped);
    fake.resetRequests();
    const hop = await browser.request(url.href);
    expect(hop.status).toBe(400);
    expect(hop.body).toContain('cannot be read');
    expect(fake.requests).toHaveLength(0);
  });

  test('expired → 400, no call to Bitbucket', async () => {
    const browser = new Browser();
    const url = await startLogin(browser);
    const [name, value] = loginCookie(browser);
    // The same content, sealed again with an end in the past (the test holds the node's key).
    const vault = new Vault(loadSigningKey(signingKey), 'login-state');
    const pending = JSON.parse(vault.open(decodeURIComponent(value), `login-state ${name}`)) as {
      e: number;
    };
    pending.e = Date.now() - 1_000;
    browser.jar.set(name, encodeURIComponent(vault.seal(JSON.stringify(pending), `login-state ${name}`)));
    fake.resetRequests();
    const hop = await browser.request(url.href);
    expect(hop.status).toBe(400);
    expect(hop.body).toContain('This login was started more than 10 minutes ago. Start it again.');
    expect(fake.requests).toHaveLength(0);
  });

  test('replayed (the cookie and state copied to another browser after use) → 400 on any node', async () => {
    const browser = new Browser();
    const url = await startLogin(browser);
    const copy = loginCookie(browser);
    expect((await browser.request(url.href)).status).toBe(302);
    const thief = new Browser();
    thief.jar.set(...copy);
    fake.resetRequests();
    const other = await startNode({
      fake,
      options: { signingKey, redis: { url: redis.url }, keyPrefix: node.prefix },
    });
    try {
      const replay = await thief.request(url.href.replace(node.url, other.url));
      expect(replay.status).toBe(400);
      expect(replay.body).toContain(
        'This login was already finished once. Start the login again if you need to.',
      );
      expect(fake.requests).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  test('foreign (sealed by a node with another signing key) → 400', async () => {
    const foreign = await startNode({ fake, options: { signingKey: pem() } });
    try {
      const browser = new Browser();
      const url = await startLogin(browser, foreign.url);
      const hop = await browser.request(url.href.replace(foreign.url, node.url));
      expect(hop.status).toBe(400);
      expect(hop.body).toContain('cannot be read');
    } finally {
      await foreign.close();
    }
  });

  test('a state with no cookie of its own (another browser) → 400', async () => {
    const url = await startLogin();
    expect((await new Browser().request(url.href)).status).toBe(400);
  });

  test('many tabs: at most 4 pending logins are kept, the oldest go first, the newest still works', async () => {
    const browser = new Browser();
    const urls: URL[] = [];
    for (let i = 0; i < 6; i++) urls.push(await startLogin(browser));
    expect([...browser.jar.keys()].filter((name) => name.startsWith('sky_login_'))).toHaveLength(4);
    expect((await browser.request(urls[0]?.href ?? '')).status).toBe(400);
    expect((await browser.request(urls[5]?.href ?? '')).status).toBe(302);
  });

  test('a landing URL too long for the cookie is refused with a message', async () => {
    const res = await fetch(`${node.url}/sky/login?redirect_uri=/${'y'.repeat(3000)}`, {
      redirect: 'manual',
      headers: { accept: 'application/json' },
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('redirect_uri is longer than 2048 characters');
  });
});

describe('callback errors are told in sky’s words, never the query’s', () => {
  const attacker = 'Your account is locked: call +1 555 0100 and read out your password';

  test.each([
    ['access_denied', 'You did not grant this CI server access to your Bitbucket Cloud account.'],
    ['invalid_scope', 'Bitbucket Cloud refused the permissions this CI server asks for'],
    ['temporarily_unavailable', 'Bitbucket Cloud cannot handle logins right now.'],
    ['made_up_code', "Bitbucket Cloud ended the login with the error code 'made_up_code'"],
    ['<b>not a code</b>', 'with an error code this CI server does not know'],
  ])('error=%s', async (error, sentence) => {
    const query = new URLSearchParams({ error, error_description: attacker, state: 'whatever' });
    const res = await fetch(`${node.url}/sky/issuer/callback?${query}`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(403);
    const html = await res.text();
    expect(html).toContain(sentence.replace(/'/g, '&#39;'));
    expect(html).not.toContain('Your account is locked');
    expect(html).not.toContain('555 0100');
    expect(html).not.toContain('not a code');
  });
});
