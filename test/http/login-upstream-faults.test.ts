import { FakeBitbucket, type Fault } from '../../lib/testing';
import { Browser, type Hop } from '../harness/browser';
import { startNode, type TestNode } from '../harness/node';

/** Bitbucket misbehaving at login (SPEC §4.2): a clear 5xx page in bounded time, and the node keeps serving. */
let fake: FakeBitbucket;
let node: TestNode;

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake }); // timeoutMs 1000, retries 2
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});
beforeEach(() => {
  fake.clearFaults();
  fake.consentAs('alice');
});

async function loginWith(fault: Fault): Promise<{ last: Hop; elapsedMs: number }> {
  fake.addFault(fault);
  const started = Date.now();
  const hops = await new Browser().follow(`${node.url}/sky/login`, 3);
  return { last: hops[hops.length - 1] as Hop, elapsedMs: Date.now() - started };
}

async function stillServing(): Promise<void> {
  fake.clearFaults();
  const keys = await fetch(`${node.url}/sky/issuer/keys`);
  expect(keys.status).toBe(200);
  const hops = await new Browser().follow(`${node.url}/sky/login`, 3);
  expect(hops[2]?.status).toBe(302);
}

test.each<[string, Fault, number, string]>([
  ['500 from the API', { match: 'api', status: 500 }, 502, 'Bitbucket Cloud answered with an error'],
  [
    '500 from the token endpoint',
    { match: 'token', status: 500 },
    502,
    'Bitbucket Cloud answered with an error',
  ],
  ['garbage JSON', { match: 'api', kind: 'malformed' }, 502, 'Bitbucket Cloud answered with an error'],
  ['an HTML answer', { match: 'api', kind: 'html' }, 502, 'Bitbucket Cloud answered with an error'],
  ['a redirect elsewhere', { match: 'api', kind: 'redirect' }, 502, 'Bitbucket Cloud answered with an error'],
  ['a huge body', { match: 'api', kind: 'huge' }, 502, 'Bitbucket Cloud answered with an error'],
  ['no answer at all', { match: 'api', kind: 'hang' }, 504, 'Bitbucket Cloud did not answer in time'],
  ['429 storms', { match: 'api', status: 429, retryAfter: 1 }, 503, 'Bitbucket Cloud is limiting requests'],
])('%s → %i page in bounded time, node keeps serving', async (_name, fault, status, title) => {
  const { last, elapsedMs } = await loginWith(fault);
  expect(last.status).toBe(status);
  expect(last.headers.get('content-type')).toMatch(/text\/html/);
  expect(last.body).toContain(title);
  expect(last.body).toMatch(/Reference for your administrator: <code>[0-9a-f-]{36}<\/code>/);
  expect(last.body).not.toMatch(/at .*\.(ts|js):\d+/); // never a stack trace
  expect(last.setCookies.some((c) => c.startsWith('skymarshal_auth'))).toBe(false);
  // timeout 1 s × (1 + 2 retries) plus backoff: bounded well under the test timeout.
  expect(elapsedMs).toBeLessThan(6_000);
  await stillServing();
});

test('one 429 followed by success → the login succeeds', async () => {
  const { last } = await loginWith({ match: 'api', status: 429, retryAfter: 0, times: 1 });
  expect(last.status).toBe(302);
  expect(new URL(last.location ?? '').searchParams.get('csrf_token')).toBeTruthy();
});

test('Bitbucket unreachable → 503 page', async () => {
  const gone = await FakeBitbucket.start();
  const n = await startNode({
    fake: gone,
    options: {
      bitbucketCloud: {
        clientId: gone.client.id,
        clientSecret: gone.client.secret,
        webUrl: fake.webUrl, // authorize at the live fake…
        apiUrl: gone.apiUrl, // …then the API is gone
        timeoutMs: 1_000,
      },
    },
  });
  await gone.stop();
  try {
    const hops = await new Browser().follow(`${n.url}/sky/login`, 3);
    expect(hops[2]?.status).toBe(503);
    expect(hops[2]?.body).toContain('Bitbucket Cloud cannot be reached');
  } finally {
    await n.close();
  }
});
