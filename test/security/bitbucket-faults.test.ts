import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Session } from 'node:inspector/promises';
import { createLogger } from '../../lib/log';
import { FakeBitbucket, type Fault } from '../../lib/testing';
import { Browser, type Hop } from '../harness/browser';
import { LONG, recordFigures } from '../harness/figures';
import { cliLoginAs } from '../harness/login';
import { startNode, type TestNode } from '../harness/node';

/**
 * Bitbucket Cloud misbehaving in every way SPEC §4.2/§5.3 names, on every route sky calls, through a
 * real node, for the login callback and for a refresh at POST /sky/token: the answer comes in bounded
 * time with the documented status, the fake sees a bounded number of calls, no token is issued, nothing
 * is lost once Bitbucket recovers, and the node keeps serving.
 */
const TIMEOUT_MS = 500;
const RETRIES = 2;
/** The client honours a Retry-After up to this (lib/bitbucket/client.ts); a longer one fails at once. */
const MAX_RETRY_AFTER_MS = 2_000;
/** One failing call: every attempt times out, and every wait between attempts is the longest allowed. */
const CALL_BOUND_MS = TIMEOUT_MS * (RETRIES + 1) + RETRIES * MAX_RETRY_AFTER_MS;
/** One sky request: one failing call plus the flow's fast calls, with room for CI noise; still finite. */
const REQUEST_BOUND_MS = CALL_BOUND_MS + 2_500;

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();

/** paula's 101 workspaces make two pages of /2.0/user/workspaces (pagelen 100). */
const PAGED_WORKSPACES = 101;

interface FaultKind {
  name: string;
  fault: Omit<Fault, 'match'>;
  status: 502 | 503 | 504;
  /** Not worth a retry (garbage, or a Retry-After beyond the cap): one attempt per call. */
  once?: true;
  /** The longest pause between two attempts of one call under this fault (timeout, backoff, Retry-After). */
  gapMs: number;
}

/** Built per use, so a Retry-After date is always an hour ahead of now. */
function faultKinds(): FaultKind[] {
  const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
  const backoff = 250; // the client's longest own backoff: 100 ms × 2^attempt + jitter
  const slow = TIMEOUT_MS + backoff;
  return [
    { name: 'slower than the timeout', fault: { latencyMs: TIMEOUT_MS + 300 }, status: 504, gapMs: slow },
    { name: 'no answer at all', fault: { kind: 'hang' }, status: 504, gapMs: slow },
    { name: '429, Retry-After: 1', fault: { status: 429, retryAfter: 1 }, status: 503, gapMs: 1_050 },
    {
      name: '429, Retry-After: 3600',
      fault: { status: 429, retryAfter: 3600 },
      status: 503,
      once: true,
      gapMs: 0,
    },
    {
      name: '429, Retry-After: an HTTP date an hour ahead',
      fault: { status: 429, retryAfter: inAnHour },
      status: 503,
      once: true,
      gapMs: 0,
    },
    { name: '500', fault: { status: 500 }, status: 502, gapMs: backoff },
    { name: '502', fault: { status: 502 }, status: 502, gapMs: backoff },
    { name: '503', fault: { status: 503 }, status: 502, gapMs: backoff },
    { name: 'malformed JSON', fault: { kind: 'malformed' }, status: 502, once: true, gapMs: 0 },
    { name: 'an HTML page', fault: { kind: 'html' }, status: 502, once: true, gapMs: 0 },
    { name: 'a 20 MB body', fault: { kind: 'huge' }, status: 502, once: true, gapMs: 0 },
    { name: 'a redirect elsewhere', fault: { kind: 'redirect' }, status: 502, once: true, gapMs: 0 },
  ];
}

interface Route {
  name: string;
  match: NonNullable<Fault['match']>;
  /** Who logs in: a user whose login reaches this route. */
  user: 'alice' | 'paula';
  /** Lets the first matching request through (the first page of a paged list). */
  skip?: number;
  /**
   * How many distinct calls of this route one request makes: one per workspace, and a refresh reads
   * the user twice (before and after the upstream refresh).
   */
  calls: { callback: number; refresh: number };
}

const ROUTES: Route[] = [
  { name: 'the token endpoint', match: 'token', user: 'alice', calls: { callback: 1, refresh: 1 } },
  { name: '/2.0/user', match: /^\/2\.0\/user$/, user: 'alice', calls: { callback: 1, refresh: 2 } },
  {
    name: 'the second page of /2.0/user/workspaces',
    match: /^\/2\.0\/user\/workspaces$/,
    user: 'paula',
    skip: 1,
    calls: { callback: 1, refresh: 1 },
  },
  // alice is in two workspaces: one call each, at once.
  {
    name: 'the 1.0 groups API',
    match: /^\/1\.0\/groups\//,
    user: 'alice',
    calls: { callback: 2, refresh: 2 },
  },
  {
    name: 'the permission API',
    match: /^\/2\.0\/user\/workspaces\/[^/]+\/permission$/,
    user: 'alice',
    calls: { callback: 2, refresh: 2 },
  },
];

/** The error page's title for each status (every 503 here is a 429 from Bitbucket). */
const PAGE_TITLE: Record<FaultKind['status'], string> = {
  502: 'Bitbucket Cloud answered with an error',
  503: 'Bitbucket Cloud is limiting requests',
  504: 'Bitbucket Cloud did not answer in time',
};

/** What one scenario observed, for the figures. */
interface Observed {
  elapsedMs: number;
  upstreamCalls: number;
  perCall: number;
  tokensIssued: number;
}
const observed: Observed[] = [];
/** Scenarios that ran to the end: figures are recorded only when all of them did. */
let completed = 0;

/** A node of its own against a fake of its own, its log lines kept (to count "token issued"). */
interface Stage {
  fake: FakeBitbucket;
  node: TestNode;
  lines: string[];
}

async function startStage(): Promise<Stage> {
  const fake = await FakeBitbucket.start();
  fake.addUser({
    key: 'paula',
    uuid: '{9a0a0000-0000-4000-8000-0000000000f1}',
    account_id: '557058:9a0a0000-00f1',
    username: 'paula',
    nickname: 'paula',
    display_name: 'Paula Pager',
    emails: [{ email: 'paula@example.com', is_primary: true, is_confirmed: true }],
  });
  for (let i = 0; i < PAGED_WORKSPACES; i++) {
    const slug = `ws-${String(i).padStart(3, '0')}`;
    fake.addWorkspace({ slug, uuid: `{ws-${i}}`, name: slug, members: [], groups: [] });
    fake.joinWorkspace('paula', slug, 'member');
  }
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const node = await startNode({
    fake,
    options: {
      signingKey,
      logger: createLogger('debug', sink),
      rateLimit: { perMinute: 0 }, // the storms measure Bitbucket handling, not the limiter
      bitbucketCloud: {
        clientId: fake.client.id,
        clientSecret: fake.client.secret,
        webUrl: fake.webUrl,
        apiUrl: fake.apiUrl,
        includeTeamGroups: true,
        getWorkspacePermissions: true,
        timeoutMs: TIMEOUT_MS,
        retries: RETRIES,
      },
    },
  });
  await node.putTeam('paging', { member: { users: ['paula'] } });
  return { fake, node, lines };
}

async function stopStage({ fake, node }: Stage): Promise<void> {
  await node.close();
  await fake.stop();
}

const issuedSince = (stage: Stage, from: number): number =>
  stage.lines.slice(from).filter((l) => (JSON.parse(l) as { msg?: string }).msg === 'token issued').length;

/** Up to the callback: sky's login, then the fake's authorize (auto-consent) sending the browser back. */
async function toCallback(stage: Stage, user: string): Promise<{ browser: Browser; callback: string }> {
  stage.fake.consentAs(user);
  const browser = new Browser();
  const login = await browser.request(`${stage.node.url}/sky/login`);
  const authorize = await browser.request(login.location ?? '');
  if (authorize.status !== 302 || !authorize.location) throw new Error(`authorize: ${authorize.status}`);
  return { browser, callback: authorize.location };
}

async function loginWorks(stage: Stage, user: string): Promise<void> {
  const { browser, callback } = await toCallback(stage, user);
  const landed = await browser.request(callback);
  expect({ user, status: landed.status }).toEqual({ user, status: 302 });
  expect(new URL(landed.location ?? '').searchParams.get('csrf_token')).toBeTruthy();
}

interface TokenAnswer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function refresh(node: TestNode, refreshToken: string): Promise<TokenAnswer> {
  const res = await fetch(`${node.url}/sky/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

async function stillServing(node: TestNode): Promise<void> {
  const keys = await fetch(`${node.url}/sky/issuer/keys`);
  expect(keys.status).toBe(200);
}

/**
 * The heap after a full garbage collection, with what the test itself keeps (the fake's request
 * records, the captured log) dropped first and the idle keep-alive connections of the storm closed
 * (undici keeps them 4 s, Node's server 5 s), so only what the node holds on to is left.
 */
async function settledHeap(stage: Stage): Promise<number> {
  stage.fake.resetRequests();
  stage.lines.length = 0;
  await sleep(6_000);
  // A full GC through the inspector protocol (what DevTools' button does): no V8 flag is flipped at run
  // time (flipping --expose-gc in a running process is undefined behaviour and was suspected of a stall).
  const session = new Session();
  session.connect();
  try {
    await session.post('HeapProfiler.collectGarbage');
  } finally {
    session.disconnect();
  }
  return process.memoryUsage().heapUsed;
}

/** Resolves once the fake has seen no request for `ms`. */
async function quiet(fake: FakeBitbucket, ms: number): Promise<void> {
  for (let seen = -1; seen !== fake.requests.length;) {
    seen = fake.requests.length;
    await sleep(ms);
  }
}

/** Runs `fault` on `route` and returns what the user saw, timed from the request that meets the fault. */
async function underFault<T>(
  stage: Stage,
  route: Route,
  kind: FaultKind,
  calls: number,
  request: () => Promise<T>,
): Promise<T> {
  const { fake } = stage;
  const before = fake.requests.length;
  const logged = stage.lines.length;
  fake.addFault({ ...kind.fault, match: route.match, ...(route.skip ? { skip: route.skip } : {}) });
  const started = Date.now();
  const answer = await request();
  const elapsedMs = Date.now() - started;
  // Calls that ran beside the failed one may still be retrying after the answer: count them too.
  await quiet(fake, kind.gapMs + 150);
  fake.clearFaults();
  const seen = fake.requests.slice(before);
  const match = route.match;
  const onRoute = seen.filter((r) =>
    match instanceof RegExp ? match.test(r.path) : r.path === '/site/oauth2/access_token',
  ).length;
  // The first page of a paged list answered normally: it is not a retry.
  const retried = onRoute - (route.skip ?? 0);
  const perCall = retried / calls;
  const tokensIssued = issuedSince(stage, logged);
  observed.push({ elapsedMs, upstreamCalls: seen.length, perCall, tokensIssued });
  const context = `${kind.name} on ${route.name}`;
  expect({ context, elapsedMs: elapsedMs <= REQUEST_BOUND_MS }).toEqual({ context, elapsedMs: true });
  const attempts = kind.once ? 1 : RETRIES + 1;
  expect({ context, perCall: perCall <= attempts }).toEqual({ context, perCall: true });
  expect({ context, tokensIssued }).toEqual({ context, tokensIssued: 0 });
  return answer;
}

async function callbackUnderFaults(route: Route): Promise<void> {
  const stage = await startStage();
  try {
    for (const kind of faultKinds()) {
      const context = `${kind.name} on ${route.name}`;
      const { browser, callback } = await toCallback(stage, route.user);
      const page: Hop = await underFault(stage, route, kind, route.calls.callback, () =>
        browser.request(callback),
      );
      expect({ context, status: page.status }).toEqual({ context, status: kind.status });
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect({ context, title: page.body.includes(PAGE_TITLE[kind.status]) }).toEqual({
        context,
        title: true,
      });
      expect(page.body).toMatch(/Reference for your administrator: <code>[0-9a-f-]{36}<\/code>/);
      expect(page.body).not.toMatch(/at .*\.(ts|js):\d+/); // never a stack trace
      expect(page.setCookies.filter((c) => /^skymarshal_/.test(c) && !/=;/.test(c))).toEqual([]);
      expect(browser.jar.has('skymarshal_auth')).toBe(false);
      if (kind.status === 503) expect(page.headers.get('retry-after')).toBe('60');
      // Nothing lost: the person logs in as soon as Bitbucket is back, and the node answers.
      await loginWorks(stage, route.user);
      await stillServing(stage.node);
    }
    completed++;
  } finally {
    await stopStage(stage);
  }
}

async function refreshUnderFaults(route: Route): Promise<void> {
  const stage = await startStage();
  const { fake, node } = stage;
  try {
    let { refreshToken } = await cliLoginAs(node.url, fake, route.user);
    for (const kind of faultKinds()) {
      const context = `${kind.name} on ${route.name}`;
      // So the refresh first refreshes the upstream tokens too; a paged fault must meet page 2 itself.
      if (!route.skip) fake.expireAccessTokens();
      const failed = await underFault(stage, route, kind, route.calls.refresh, () =>
        refresh(node, refreshToken),
      );
      expect({ context, status: failed.status }).toEqual({ context, status: kind.status });
      expect(failed.headers.get('cache-control')).toBe('no-store');
      expect(failed.body).toEqual({
        error: 'temporarily_unavailable',
        error_description: expect.stringContaining('Bitbucket Cloud') as unknown,
      });
      const lostAnswer = route.match === 'token' && kind.fault.latencyMs !== undefined;
      if (lostAnswer) {
        // Bitbucket rotated the upstream refresh token in an answer sky gave up on: that grant is
        // gone for good, so the client is told to log in again (RFC 6749), and logging in works.
        await sleep(kind.fault.latencyMs ?? 0);
        const after = await refresh(node, refreshToken);
        expect({ context, status: after.status, error: after.body['error'] }).toEqual({
          context,
          status: 400,
          error: 'invalid_grant',
        });
        ({ refreshToken } = await cliLoginAs(node.url, fake, route.user));
      } else {
        // Nothing lost: the failed refresh did not rotate the token, so the same one works now.
        const after = await refresh(node, refreshToken);
        expect({ context, status: after.status }).toEqual({ context, status: 200 });
        expect(after.body['access_token']).toEqual(expect.any(String));
        refreshToken = String(after.body['refresh_token']);
      }
      await stillServing(node);
    }
    completed++;
  } finally {
    await stopStage(stage);
  }
}

/**
 * The ten scenarios (five routes, two flows) each have a node and a fake of their own, so they all run
 * at once from here; each test then awaits its own and reports its own failure.
 */
const FLOWS = { callback: callbackUnderFaults, refresh: refreshUnderFaults };
const runs = new Map<string, Promise<void>>();
describe('Bitbucket misbehaving', () => {
  beforeAll(() => {
    for (const route of ROUTES) {
      for (const [flow, run] of Object.entries(FLOWS)) {
        const done = run(route);
        done.catch(() => undefined); // reported by its test, not as an unhandled rejection
        runs.set(`${flow} ${route.name}`, done);
      }
    }
  });

  describe.each(ROUTES)('on $name', (route) => {
    test('the login callback: a clear page in bounded time, no cookie, login works after', async () => {
      await runs.get(`callback ${route.name}`);
    }, 60_000);
    test('a refresh: an RFC 6749 error in bounded time, the refresh token still works after', async () => {
      await runs.get(`refresh ${route.name}`);
    }, 60_000);
  });
});

(LONG ? test : test.skip)(
  'a storm of 200 logins and 200 refreshes against 429 and 5xx: bounded, responsive, memory flat',
  async () => {
    const stage = await startStage();
    const { fake, node } = stage;
    const STORM = 200;
    try {
      const refreshTokens: string[] = [];
      for (let i = 0; i < STORM; i++)
        refreshTokens.push((await cliLoginAs(node.url, fake, 'alice')).refreshToken);
      const heapBefore = await settledHeap(stage);
      let slowestProbeMs = 0;
      let slowestAnswerMs = 0;
      const statuses = new Map<number, number>();
      const heapAfterRounds: number[] = [];
      const round: Omit<Fault, 'match'>[] = [{ status: 429 }, { status: 500 }, { status: 503 }];
      // Two rounds: the first warms up pools and caches; a leak would grow the heap again in the second.
      const storms = [...round, ...round];
      for (const fault of storms) {
        const callbacks = await Promise.all(Array.from({ length: STORM }, () => toCallback(stage, 'alice')));
        fake.addFault({ ...fault, match: 'api' });
        const before = fake.requests.length;
        let storming = true;
        // Meanwhile, a person reading the keys page must not wait for the storm.
        const probes = (async () => {
          while (storming) {
            const started = Date.now();
            await stillServing(node);
            slowestProbeMs = Math.max(slowestProbeMs, Date.now() - started);
            await sleep(50);
          }
        })();
        const timed = async <T>(work: () => Promise<T>): Promise<T> => {
          const started = Date.now();
          const result = await work();
          slowestAnswerMs = Math.max(slowestAnswerMs, Date.now() - started);
          return result;
        };
        const [pages, refreshes] = await Promise.all([
          Promise.all(callbacks.map(({ browser, callback }) => timed(() => browser.request(callback)))),
          Promise.all(refreshTokens.map((t) => timed(() => refresh(node, t)))),
        ]);
        storming = false;
        await probes;
        fake.clearFaults();
        // Under a storm some calls to the (same-process) fake outlast the timeout: 504 is documented too.
        const allowed = [fault.status === 429 ? 503 : 502, 504];
        for (const status of [...pages, ...refreshes].map((a) => a.status)) {
          expect(allowed).toContain(status);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
        expect(refreshes.every((r) => r.body['error'] === 'temporarily_unavailable')).toBe(true);
        expect(pages.some((p) => p.setCookies.some((c) => c.startsWith('skymarshal_auth=b')))).toBe(false);
        // Each request reads user, emails and workspaces, each at most retries + 1 times (+ the code exchange).
        expect(fake.requests.length - before).toBeLessThanOrEqual(
          STORM * (3 * (RETRIES + 1) + 1) + STORM * 3 * (RETRIES + 1),
        );
        if (fault === round.at(-1)) heapAfterRounds.push(await settledHeap(stage)); // a round ends
      }
      // Every refresh token survived the storms, and logging in works.
      // Twenty at a time: this checks survival, not a third storm (on a busy machine a burst of 200
      // against the same-process fake meets its own timeouts).
      const after: TokenAnswer[] = [];
      for (let i = 0; i < refreshTokens.length; i += 20)
        after.push(...(await Promise.all(refreshTokens.slice(i, i + 20).map((t) => refresh(node, t)))));
      expect(new Set(after.map((r) => r.status))).toEqual(new Set([200]));
      await loginWorks(stage, 'alice');
      const mb = (bytes: number): number => Math.round(bytes / 2 ** 20);
      const [firstRound = 0, secondRound = 0] = heapAfterRounds;
      // Twice the bound of one request: the storm, the fake and the clients share one process here.
      expect(slowestAnswerMs).toBeLessThanOrEqual(REQUEST_BOUND_MS * 2);
      expect(slowestProbeMs).toBeLessThan(2_000);
      expect(mb(secondRound - firstRound)).toBeLessThan(8);
      recordFigures('Bitbucket faults', {
        'storm (long run)': `${storms.length} × (${STORM} logins + ${STORM} refreshes at once), faults 429/500/503`,
        'storm: slowest answer (ms)': slowestAnswerMs,
        'storm: slowest /sky/issuer/keys meanwhile (ms)': slowestProbeMs,
        'storm: heap after GC, before / round 1 / round 2 (MB)': `${mb(heapBefore)} / ${mb(firstRound)} / ${mb(secondRound)}`,
        'storm: answers by status': [...statuses]
          .sort(([x], [y]) => x - y)
          .map(([status, n]) => `${status}: ${n}`)
          .join(', '),
      });
    } finally {
      await stopStage(stage);
    }
  },
  // About a minute alone; room for a busy CI machine (six storms of 400 requests in one process).
  240_000,
);

afterAll(() => {
  if (completed < ROUTES.length * 2) return;
  const kinds = faultKinds().length;
  recordFigures('Bitbucket faults', {
    'fault kinds × routes × flows': `${kinds} × ${ROUTES.length} × 2 = ${kinds * ROUTES.length * 2}`,
    'timeout, retries': `${TIMEOUT_MS} ms, ${RETRIES}`,
    'max latency observed / bound (ms)': `${Math.max(...observed.map((o) => o.elapsedMs))} / ${REQUEST_BOUND_MS}`,
    'max upstream calls per request': Math.max(...observed.map((o) => o.upstreamCalls)),
    'max attempts per Bitbucket call': Math.max(...observed.map((o) => o.perCall)),
    crashes: 0, // every case ends by asking the node for its keys: a crash fails the run instead
    'tokens issued on failure': observed.reduce((n, o) => n + o.tokensIssued, 0),
  });
});
