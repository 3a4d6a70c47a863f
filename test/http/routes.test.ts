import { ROUTES, answerKind } from '../../lib/http/routes';
import { FakeBitbucket } from '../../lib/testing';
import { startNode, type TestNode } from '../harness/node';

/**
 * One route table (issue #16): every route sky declares answers a method it does not take with 405 and
 * an `Allow` of exactly its methods, in the route's own answer kind; nothing else under /sky is a route.
 */
let fake: FakeBitbucket;
let node: TestNode;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
});
afterAll(async () => {
  await node?.close();
  await fake?.stop();
});

const concrete = (path: string): string => path.replace(/:connector/, 'local').replace(/:team/, 'main');

test.each(ROUTES.map((r) => [r.path, r] as const))(
  '%s: 405 with Allow for any other method',
  async (_path, route) => {
    const res = await fetch(`${node.url}${concrete(route.path)}`, { method: 'PATCH' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe(route.methods.join(', '));
    const type = res.headers.get('content-type') ?? '';
    if (route.kind === 'json' || route.kind === 'oauth') expect(type).toMatch(/^application\/json/);
    if (route.kind === 'html') expect(type).toMatch(/^text\/html/);
    const body = await res.text();
    if (route.kind === 'oauth') expect(JSON.parse(body)).toMatchObject({ error: 'invalid_request' });
  },
);

test('paths outside the table: sky pages under /sky, a host app’s /api is its own', async () => {
  const unknown = await fetch(`${node.url}/sky/nothing-here`);
  expect(unknown.status).toBe(404);
  expect(unknown.headers.get('content-type')).toMatch(/^text\/html/);
  expect(answerKind('/api/v2/pipelines')).toBe('json');
  expect(answerKind('/host/page')).toBe('negotiated');
  // A path one segment deeper than a route is not the route.
  expect(answerKind('/api/v1/teams/main/pipelines')).toBe('json');
  expect((await fetch(`${node.url}/api/v1/teams/main/pipelines`)).status).toBe(404);
});
