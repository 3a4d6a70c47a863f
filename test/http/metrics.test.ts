import { FakeBitbucket } from '../../lib/testing';
import { Browser } from '../harness/browser';
import { loginAs } from '../harness/login';
import { metricSample } from '../harness/metrics';
import { startNode, type TestNode } from '../harness/node';

/**
 * sky's Prometheus metrics (README "Metrics") count what happened: a login, a refusal by reason, a
 * Bitbucket error by endpoint and status, the guards' verdicts.
 */
let fake: FakeBitbucket;
let node: TestNode;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
});
afterAll(async () => {
  await node.close();
  await fake.stop();
});

const sample = (name: string, labels: Record<string, string> = {}): Promise<number> =>
  metricSample(node, name, labels);

test('a login, a refusal and a Bitbucket error are counted, by connector, reason and endpoint', async () => {
  const logins = await sample('sky_logins_total', { connector: 'bitbucket-cloud' });
  await loginAs(node.url, fake, 'alice');
  expect(await sample('sky_logins_total', { connector: 'bitbucket-cloud' })).toBe(logins + 1);
  expect(
    await sample('sky_upstream_requests_total', { endpoint: '/2.0/user', status: '200' }),
  ).toBeGreaterThan(0);

  // dave is in no team of this node: refused at the callback, with that reason.
  const refusedBefore = await sample('sky_login_refusals_total', { reason: 'not_in_any_team' });
  fake.consentAs('dave');
  const hops = await new Browser().follow(`${node.url}/sky/login`, 3);
  expect(hops[2]?.status).toBe(403);
  expect(await sample('sky_login_refusals_total', { reason: 'not_in_any_team' })).toBe(refusedBefore + 1);

  // Bitbucket answers 500 for the user: every attempt counted with its status, the login refused.
  fake.addFault({ match: /^\/2\.0\/user$/, status: 500 });
  try {
    const failed = await new Browser().follow(`${node.url}/sky/login`, 3);
    expect(failed[2]?.status).toBe(502);
  } finally {
    fake.clearFaults();
  }
  expect(await sample('sky_upstream_requests_total', { endpoint: '/2.0/user', status: '500' })).toBe(3);
  expect(await sample('sky_login_refusals_total', { reason: 'upstream_error' })).toBe(1);
  expect(
    await sample('sky_upstream_request_duration_seconds_count', { endpoint: '/2.0/user' }),
  ).toBeGreaterThanOrEqual(4);
});

test('guard decisions: allowed, unauthenticated and forbidden', async () => {
  const alice = await loginAs(node.url, fake, 'alice');
  await node.putTeam('ops', { owner: { users: ['bitbucket-cloud:bob'] } });
  const bob = await loginAs(node.url, fake, 'bob');
  const before = {
    allowed: await sample('sky_guard_decisions_total', { result: 'allowed' }),
    unauthenticated: await sample('sky_guard_decisions_total', { result: 'unauthenticated' }),
    forbidden: await sample('sky_guard_decisions_total', { result: 'forbidden' }),
  };
  expect((await fetch(`${node.url}/api/v1/teams/main`, { headers: alice.bearer })).status).toBe(200);
  expect((await fetch(`${node.url}/api/v1/teams/main`)).status).toBe(401);
  expect((await fetch(`${node.url}/api/v1/teams/main`, { headers: bob.bearer })).status).toBe(403);
  expect(await sample('sky_guard_decisions_total', { result: 'allowed' })).toBe(before.allowed + 1);
  expect(await sample('sky_guard_decisions_total', { result: 'unauthenticated' })).toBe(
    before.unauthenticated + 1,
  );
  expect(await sample('sky_guard_decisions_total', { result: 'forbidden' })).toBe(before.forbidden + 1);
  // A logout is a revocation of its family.
  const revoked = await sample('sky_revocations_total', { kind: 'family' });
  const out = await fetch(`${node.url}/sky/logout`, { method: 'POST', headers: bob.bearer });
  expect(out.status).toBe(204);
  expect(await sample('sky_revocations_total', { kind: 'family' })).toBe(revoked + 1);
});

test('the code exchange is counted by its status: answered, refused, timed out', async () => {
  const token = { endpoint: '/site/oauth2/access_token' };
  const answered = await sample('sky_upstream_requests_total', { ...token, status: '200' });
  await loginAs(node.url, fake, 'alice');
  expect(await sample('sky_upstream_requests_total', { ...token, status: '200' })).toBe(answered + 1);

  fake.addFault({ match: 'token', status: 503, times: 1 });
  const refused = await new Browser().follow(`${node.url}/sky/login`, 3);
  expect(refused[2]?.status).toBe(502);
  expect(await sample('sky_upstream_requests_total', { ...token, status: '503' })).toBe(1);

  // The node's timeout is 1 s (test/harness/node.ts): a hanging token endpoint is a `timeout`.
  fake.addFault({ match: 'token', kind: 'hang', times: 1 });
  try {
    const hung = await new Browser().follow(`${node.url}/sky/login`, 3);
    expect(hung[2]?.status).toBe(504);
  } finally {
    fake.clearFaults();
  }
  expect(await sample('sky_upstream_requests_total', { ...token, status: 'timeout' })).toBe(1);
  expect(await sample('sky_upstream_request_duration_seconds_count', token)).toBe(answered + 3);
});
