import type { RequestHandler, Router } from 'express';
import { SkyError } from '../errors';

/** How a route answers, errors included: JSON, sky's HTML pages, RFC 6749 bodies, or what the client accepts. */
export type AnswerKind = 'json' | 'html' | 'oauth' | 'negotiated';
export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

interface RouteSpec {
  path: string;
  kind: AnswerKind;
  methods: readonly Method[];
}

/**
 * sky's routes (SPEC §4), each declared once: the router, the own-path test, the 405 answers and the
 * error handler's answer kind all come from this table.
 */
export const ROUTES = [
  { path: '/sky/login', kind: 'html', methods: ['GET'] },
  { path: '/sky/login/:connector', kind: 'html', methods: ['POST'] },
  { path: '/sky/issuer/callback', kind: 'html', methods: ['GET'] },
  { path: '/sky/issuer/keys', kind: 'json', methods: ['GET'] },
  { path: '/.well-known/openid-configuration', kind: 'json', methods: ['GET'] },
  { path: '/sky/fly', kind: 'html', methods: ['POST'] },
  // A page for a browser, 204 for a client: what the request accepts.
  { path: '/sky/logout', kind: 'negotiated', methods: ['GET', 'POST'] },
  { path: '/sky/token', kind: 'oauth', methods: ['POST'] },
  // Concourse's legacy routes.
  { path: '/login', kind: 'html', methods: ['GET'] },
  { path: '/logout', kind: 'html', methods: ['GET'] },
  { path: '/api/v1/info', kind: 'json', methods: ['GET'] },
  { path: '/api/v1/user', kind: 'json', methods: ['GET'] },
  { path: '/api/v1/teams', kind: 'json', methods: ['GET'] },
  { path: '/api/v1/teams/:team', kind: 'json', methods: ['GET', 'PUT', 'DELETE'] },
  { path: '/api/v1/teams/:team/tokens', kind: 'json', methods: ['GET', 'POST'] },
  { path: '/api/v1/teams/:team/tokens/:name', kind: 'json', methods: ['DELETE'] },
  { path: '/api/v1/audit', kind: 'json', methods: ['GET'] },
] as const satisfies readonly RouteSpec[];

type Route = (typeof ROUTES)[number];
/** `'GET /sky/login'`, `'PUT /api/v1/teams/:team'`, …: one key per route and method of the table. */
export type RouteKey = { [R in Route as R['path']]: `${R['methods'][number]} ${R['path']}` }[Route['path']];

/** A route's path as a pattern: `:param` is one segment, one trailing slash is allowed (as Express's). */
const patternOf = (path: string): string =>
  path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[a-z]+/g, '[^/]+') + '/?';

const MATCHERS = ROUTES.map((r) => ({ route: r, re: new RegExp(`^${patternOf(r.path)}$`) }));

/** The paths sky answers itself: its routes, and anything else under /sky (a 404 in sky's shape). */
export const OWN_PATH = new RegExp(`^(?:/sky(?:/|$)|(?:${ROUTES.map((r) => patternOf(r.path)).join('|')})$)`);

/**
 * How an answer to `path` is shaped: its route's kind; sky's other /sky paths are pages, a host's /api
 * paths JSON; a host app's other guarded routes answer what the client accepts.
 */
export function answerKind(path: string): AnswerKind {
  const found = MATCHERS.find((m) => m.re.test(path));
  if (found) return found.route.kind;
  if (path === '/sky' || path.startsWith('/sky/')) return 'html';
  if (path.startsWith('/api/')) return 'json';
  return 'negotiated';
}

/** For a path sky owns: any method but these is 405, with `Allow` (a client learns what it may send). */
export function onlyMethods(...methods: readonly string[]): RequestHandler {
  return (req, res) => {
    res.set('Allow', methods.join(', '));
    throw new SkyError(
      'method_not_allowed',
      `${req.method.slice(0, 20)} is not allowed here: use ${methods.join(' or ')}`,
    );
  };
}

/**
 * Puts every route of the table on `router` with its handlers (one list per route and method), then a
 * 405 for any other method on that path.
 */
export function mountRoutes(router: Router, handlers: Record<RouteKey, RequestHandler[]>): void {
  for (const route of ROUTES as readonly RouteSpec[]) {
    for (const method of route.methods) {
      const chain = handlers[`${method} ${route.path}` as RouteKey];
      router[method.toLowerCase() as 'get' | 'post' | 'put' | 'delete'](route.path, ...chain);
    }
    router.all(route.path, onlyMethods(...route.methods));
  }
}
