import { randomUUID } from 'node:crypto';
import type { SessionData, Store as SessionStore } from 'express-session';
import { Cluster } from 'ioredis';
import { createLogger } from '../../lib/log';
import {
  connectRedis,
  createMemoryStore,
  createRedisStore,
  type Store,
  type StoreEvent,
} from '../../lib/store';
import { testPrefix, testRedis } from '../harness/node';

/**
 * Issue #16: the store contract. Every record kind of the Store interface, with the same expectations
 * for the Redis store (standalone, or a Cluster under SKY_TEST_REDIS=cluster) and the embedded one,
 * expiry included (real time, short TTLs). Once every TTL has passed a store holds what it held at the
 * start: the embedded store by its own count of entries, Redis by the keys under the store's prefix.
 */

/** A session whose cookie has no expiry lives this long (both stores are given it). */
const SESSION_TTL_SECONDS = 1;
/** What the tests that do not watch expiry give as a TTL: nothing of theirs expires while the file runs. */
const HOUR_SECONDS = 3600;

interface Subject {
  store: Store;
  /** What the store holds now: the embedded store's entries, or the Redis keys under its prefix. */
  held(): Promise<number>;
  close(): Promise<void>;
}

async function openMemory(): Promise<Subject> {
  const store = createMemoryStore({ sessionTtlSeconds: SESSION_TTL_SECONDS });
  return { store, held: async () => store.size(), close: () => store.close() };
}

async function openRedis(): Promise<Subject> {
  const prefix = testPrefix();
  const store = createRedisStore(testRedis(), prefix, createLogger('silent'), SESSION_TTL_SECONDS);
  await store.ready;
  const redis = connectRedis(testRedis());
  await redis.exists(`${prefix}ping`); // a Cluster knows its masters once a command went through
  const held = async (): Promise<number> => {
    let keys = 0;
    for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
      let cursor = '0';
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        keys += found.length;
      } while (cursor !== '0');
    }
    return keys;
  };
  return {
    store,
    held,
    async close() {
      await redis.quit();
      await store.close();
    },
  };
}

const id = (what: string): string => `${what}-${randomUUID()}`;

/** express-session's callback API as promises. */
const sessions = {
  get: (s: SessionStore, sid: string) =>
    new Promise<SessionData | null>((resolve, reject) =>
      s.get(sid, (err: unknown, data) => (err ? reject(err as Error) : resolve(data ?? null))),
    ),
  set: (s: SessionStore, sid: string, data: SessionData) =>
    new Promise<void>((resolve, reject) =>
      s.set(sid, data, (err: unknown) => (err ? reject(err as Error) : resolve())),
    ),
  touch: (s: SessionStore, sid: string, data: SessionData) =>
    new Promise<void>((resolve, reject) => {
      if (!s.touch) throw new Error('the session store has no touch()');
      s.touch(sid, data, (err?: unknown) => (err ? reject(err as Error) : resolve()));
    }),
  destroy: (s: SessionStore, sid: string) =>
    new Promise<void>((resolve, reject) =>
      s.destroy(sid, (err: unknown) => (err ? reject(err as Error) : resolve())),
    ),
};

/** A session as express-session saves it, its cookie expiring in `ms` (none: a browser-session cookie). */
function sessionData(ms: number | null, user = id('user')): SessionData {
  const cookie = { originalMaxAge: ms, httpOnly: true, path: '/sky', sameSite: 'lax' };
  const expires = ms === null ? {} : { expires: new Date(Date.now() + ms) };
  return { cookie: { ...cookie, ...expires }, passport: { user } } as unknown as SessionData;
}

/** What a store gives back of a saved session: its JSON. */
const asStored = (data: SessionData): unknown => JSON.parse(JSON.stringify(data));

const sleepUntil = (at: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));

describe.each([
  ['embedded', openMemory],
  ['Redis', openRedis],
] as const)('the %s store keeps the store contract', (_kind, open) => {
  let subject: Subject;
  let store: Store;
  const events: StoreEvent[] = [];

  /** The events `match` accepts, once there are `n` of them (within 2 s). */
  async function hear(match: (e: StoreEvent) => boolean, n = 1): Promise<StoreEvent[]> {
    const deadline = Date.now() + 2_000;
    for (;;) {
      const found = events.filter(match);
      if (found.length >= n) return found;
      if (Date.now() > deadline)
        throw new Error(`the store published ${found.length} of ${n} such events in 2 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  const teamEvents = (team: string) =>
    events.filter((e): e is Extract<StoreEvent, { type: 'team' }> => e.type === 'team' && e.team === team);

  beforeAll(async () => {
    subject = await open();
    store = subject.store;
    store.subscribe((event) => events.push(event));
  });
  afterAll(() => subject.close());

  describe('teams', () => {
    it('creates, updates and deletes a config, telling every node each change', async () => {
      const team = id('team');
      const first = JSON.stringify({ owner: { users: ['bitbucket-cloud:alice'] } });
      const second = JSON.stringify({ owner: { users: ['bitbucket-cloud:bob'] } });
      const none = { users: [], groups: [] };
      expect(await store.teams.get(team)).toBeNull();
      expect(await store.teams.put(team, first, none, 'upsert')).toBe('created');
      expect(await store.teams.get(team)).toBe(first);
      await hear((e) => e.type === 'team' && e.team === team && e.config === first);
      expect(await store.teams.put(team, second, none, 'update')).toBe('updated');
      expect(await store.teams.get(team)).toBe(second);
      expect(await store.teams.put(team, first, none, 'upsert')).toBe('updated');
      expect((await store.teams.all()).get(team)).toBe(first);
      expect(await store.teams.delete(team)).toBe(true);
      await hear((e) => e.type === 'team' && e.team === team && e.config === null);
      expect(await store.teams.get(team)).toBeNull();
      expect((await store.teams.all()).has(team)).toBe(false);
      expect(teamEvents(team).map((e) => e.config)).toEqual([first, second, first, null]);
    });

    it('never re-creates a deleted team on update, and deleting nothing tells nobody', async () => {
      const team = id('team');
      const after = id('team');
      const json = JSON.stringify({ owner: { users: ['bitbucket-cloud:alice'] } });
      const principals = { users: ['bitbucket-cloud:alice'], groups: [] };
      expect(await store.teams.put(team, json, principals, 'update')).toBe('missing');
      expect(await store.teams.get(team)).toBeNull();
      expect(await store.teams.findByPrincipals(principals)).toEqual(new Map());
      expect(await store.teams.delete(team)).toBe(false);
      // Events arrive in order: once the next write's is heard, none for `team` can still come.
      await store.teams.put(after, json, { users: [], groups: [] }, 'upsert');
      await hear((e) => e.type === 'team' && e.team === after);
      expect(teamEvents(team)).toEqual([]);
      await store.teams.delete(after);
    });

    it('finds teams by the principals their configs name, as each write moves the index', async () => {
      const [a, b] = [id('team'), id('team')];
      const [alice, bob, crew, ops] = [
        id('bitbucket-cloud:alice'),
        id('bitbucket-cloud:bob'),
        id('ws'),
        id('ws'),
      ];
      const json = (n: number) => JSON.stringify({ n });
      await store.teams.put(a, json(1), { users: [alice], groups: [crew] }, 'upsert');
      await store.teams.put(b, json(2), { users: [bob], groups: [crew] }, 'upsert');
      expect(await store.teams.findByPrincipals({ users: [alice], groups: [] })).toEqual(
        new Map([[a, json(1)]]),
      );
      expect(await store.teams.findByPrincipals({ users: [], groups: [crew] })).toEqual(
        new Map([
          [a, json(1)],
          [b, json(2)],
        ]),
      );
      expect(await store.teams.findByPrincipals({ users: [alice, bob], groups: [ops] })).toEqual(
        new Map([
          [a, json(1)],
          [b, json(2)],
        ]),
      );
      expect(await store.teams.findByPrincipals({ users: [], groups: [] })).toEqual(new Map());
      // A rewrite names bob and ops instead: alice and crew no longer find it.
      await store.teams.put(a, json(3), { users: [bob], groups: [ops] }, 'update');
      expect(await store.teams.findByPrincipals({ users: [alice], groups: [] })).toEqual(new Map());
      expect(await store.teams.findByPrincipals({ users: [], groups: [crew] })).toEqual(
        new Map([[b, json(2)]]),
      );
      expect(await store.teams.findByPrincipals({ users: [], groups: [ops] })).toEqual(
        new Map([[a, json(3)]]),
      );
      await store.teams.delete(a);
      await store.teams.delete(b);
      expect(await store.teams.findByPrincipals({ users: [alice, bob], groups: [crew, ops] })).toEqual(
        new Map(),
      );
    });
  });

  describe('revocations', () => {
    it('keeps the later time of each, loads what the cutoffs leave, and counts what it holds', async () => {
      const start = await store.revocations.counts();
      const [family, user, token] = [id('sid'), id('bitbucket-cloud:user'), id('jti')];
      const base = Date.now() + 3_600_000;
      await store.revocations.revokeFamily(family, base + 2_000);
      // An earlier time arriving late never lowers one in force; every node hears the time in force.
      await store.revocations.revokeFamily(family, base + 1_000);
      await store.revocations.revokeUser(user, 2_000);
      await store.revocations.revokeUser(user, 1_000);
      await store.revocations.restoreToken(token, base + 5_000);
      await store.revocations.restoreToken(token, base + 4_000);
      expect(await hear((e) => e.type === 'revoke-family' && e.sid === family, 2)).toEqual([
        { type: 'revoke-family', sid: family, until: base + 2_000 },
        { type: 'revoke-family', sid: family, until: base + 2_000 },
      ]);
      expect(await hear((e) => e.type === 'revoke-user' && e.sub === user, 2)).toEqual([
        { type: 'revoke-user', sub: user, notBefore: 2_000 },
        { type: 'revoke-user', sub: user, notBefore: 2_000 },
      ]);
      expect(await store.revocations.counts()).toEqual({
        tokens: start.tokens + 1,
        families: start.families + 1,
        users: start.users + 1,
      });

      // An entry exactly at its cutoff still covers a token; one below it is dropped.
      const atCutoffs = await store.revocations.load({
        families: base + 2_000,
        tokens: base + 5_000,
        users: 2_000,
      });
      expect(atCutoffs.families).toContainEqual([family, base + 2_000]);
      expect(atCutoffs.tokens).toContainEqual([token, base + 5_000]);
      expect(atCutoffs.users).toContainEqual([user, 2_000]);
      const past = await store.revocations.load({
        families: base + 2_001,
        tokens: base + 5_001,
        users: 2_001,
      });
      expect(past.families.map(([sid]) => sid)).not.toContain(family);
      expect(past.tokens.map(([jti]) => jti)).not.toContain(token);
      expect(past.users.map(([sub]) => sub)).not.toContain(user);
      expect(await store.revocations.counts()).toEqual(start); // nothing else revokes in this store
    });
  });

  describe('grants', () => {
    it("keeps a user's sealed upstream tokens", async () => {
      const sub = id('bitbucket-cloud:user');
      expect(await store.grants.upstream(sub)).toBeNull();
      await store.grants.saveUpstream(sub, 'sealed-1', HOUR_SECONDS);
      await store.grants.saveUpstream(sub, 'sealed-2', HOUR_SECONDS);
      expect(await store.grants.upstream(sub)).toBe('sealed-2');
    });

    it('rotates a family; a spent token is reuse and ends it, anything else is unknown and ends nothing', async () => {
      const sub = id('bitbucket-cloud:user');
      const family = id('sid');
      await store.grants.createFamily(sub, family, 'h1', HOUR_SECONDS);
      expect(await store.grants.inspect(family, 'h1')).toEqual({ state: 'current', sub });
      expect(await store.grants.inspect(family, 'never-issued')).toEqual({ state: 'unknown' });
      expect(await store.grants.rotate(family, 'never-issued', 'x')).toBe('unknown');
      expect(await store.grants.rotate(family, 'h1', 'h2')).toBe('current');
      expect(await store.grants.inspect(family, 'h2')).toEqual({ state: 'current', sub });
      expect(await store.grants.rotate(family, 'h2', 'h3')).toBe('current');
      // h1 again: reuse. The family ends, its current token with it.
      expect(await store.grants.rotate(family, 'h1', 'h4')).toBe('reused');
      expect(await store.grants.inspect(family, 'h3')).toEqual({ state: 'unknown' });
      expect(await store.grants.rotate(family, 'h3', 'h4')).toBe('unknown');

      const other = id('sid');
      await store.grants.createFamily(sub, other, 'k1', HOUR_SECONDS);
      await store.grants.rotate(other, 'k1', 'k2');
      expect(await store.grants.inspect(other, 'k1')).toEqual({ state: 'reused', sub });
      expect(await store.grants.inspect(other, 'k2')).toEqual({ state: 'unknown' });

      const ended = id('sid');
      await store.grants.createFamily(sub, ended, 'e1', HOUR_SECONDS);
      await store.grants.endFamily(ended);
      expect(await store.grants.inspect(ended, 'e1')).toEqual({ state: 'unknown' });
      await store.grants.endFamily(id('sid')); // ending what does not exist is no error
      expect(await store.grants.inspect(id('sid'), 'h1')).toEqual({ state: 'unknown' });
    });

    it('remembers the last 16 spent tokens of a family, and forgets older ones without ending it', async () => {
      const sub = id('bitbucket-cloud:user');
      const family = id('sid');
      await store.grants.createFamily(sub, family, 't0', HOUR_SECONDS);
      for (let i = 0; i < 17; i++)
        expect(await store.grants.rotate(family, `t${i}`, `t${i + 1}`)).toBe('current');
      // t0 … t16 are spent; t0 is the 17th newest: forgotten, so unknown, and the family lives on.
      expect(await store.grants.inspect(family, 't0')).toEqual({ state: 'unknown' });
      expect(await store.grants.inspect(family, 't17')).toEqual({ state: 'current', sub });
      expect(await store.grants.inspect(family, 't1')).toEqual({ state: 'reused', sub });
      expect(await store.grants.inspect(family, 't17')).toEqual({ state: 'unknown' });
    });

    it("forgets a user: every family and the upstream tokens end, and the user's sessions are named", async () => {
      const [sub, other] = [id('bitbucket-cloud:user'), id('bitbucket-cloud:user')];
      const [f1, f2, theirs] = [id('sid'), id('sid'), id('sid')];
      await store.grants.saveUpstream(sub, 'sealed', HOUR_SECONDS);
      await store.grants.saveUpstream(other, 'theirs', HOUR_SECONDS);
      await store.grants.createFamily(sub, f1, 'a', HOUR_SECONDS);
      await store.grants.createFamily(sub, f2, 'b', HOUR_SECONDS);
      await store.grants.createFamily(other, theirs, 'c', HOUR_SECONDS);
      const [s1, s2, s3, s4] = [id('sess'), id('sess'), id('sess'), id('sess')];
      await store.grants.rememberSession(sub, s1, HOUR_SECONDS);
      await store.grants.rememberSession(sub, s2, HOUR_SECONDS);
      await store.grants.rememberSession(sub, s3, HOUR_SECONDS);
      await store.grants.rememberSession(other, s4, HOUR_SECONDS);
      await store.grants.forgetSession(sub, s2); // its logout
      await store.grants.forgetSession(sub, id('sess')); // forgetting what is not there is no error

      expect((await store.grants.forgetUser(sub)).sort()).toEqual([s1, s3].sort());
      expect(await store.grants.inspect(f1, 'a')).toEqual({ state: 'unknown' });
      expect(await store.grants.inspect(f2, 'b')).toEqual({ state: 'unknown' });
      expect(await store.grants.upstream(sub)).toBeNull();
      expect(await store.grants.forgetUser(sub)).toEqual([]);
      // Another user keeps everything.
      expect(await store.grants.inspect(theirs, 'c')).toEqual({ state: 'current', sub: other });
      expect(await store.grants.upstream(other)).toBe('theirs');
      expect(await store.grants.forgetUser(other)).toEqual([s4]);
    });

    it("keeps a user's groups and tells every node", async () => {
      const sub = id('bitbucket-cloud:user');
      const record = { groups: ['bitbucket-cloud:ws/devs', 'bitbucket-cloud:ws'], readAt: 1_700_000_000_000 };
      expect(await store.grants.groups(sub)).toBeNull();
      await store.grants.saveGroups(sub, record, HOUR_SECONDS);
      expect(await store.grants.groups(sub)).toEqual(record);
      expect(await hear((e) => e.type === 'groups' && e.sub === sub)).toEqual([
        { type: 'groups', sub, ...record },
      ]);
    });

    it('gives the refresh lease to one holder at a time, which alone renews and releases it', async () => {
      const sub = id('bitbucket-cloud:user');
      expect(await store.grants.lock(sub, 'node-a', 60_000)).toBe(true);
      expect(await store.grants.lock(sub, 'node-b', 60_000)).toBe(false);
      expect(await store.grants.lock(sub, 'node-a', 60_000)).toBe(false);
      expect(await store.grants.renew(sub, 'node-b', 60_000)).toBe(false);
      await store.grants.unlock(sub, 'node-b');
      expect(await store.grants.lock(sub, 'node-b', 60_000)).toBe(false);
      expect(await store.grants.renew(sub, 'node-a', 60_000)).toBe(true);
      await store.grants.unlock(sub, 'node-a');
      expect(await store.grants.renew(sub, 'node-a', 60_000)).toBe(false);
      expect(await store.grants.lock(sub, 'node-b', 60_000)).toBe(true);
      await store.grants.unlock(sub, 'node-b');
    });
  });

  describe('rate limits', () => {
    it("counts a bucket's requests in its window; peeking counts nothing", async () => {
      const bucket = id('login:127.0.0.1');
      expect(await store.rateLimits.peek(bucket)).toEqual({ count: 0, resetMs: 0 });
      for (let n = 1; n <= 3; n++) {
        const { count, resetMs } = await store.rateLimits.hit(bucket, 60_000);
        expect(count).toBe(n);
        expect(resetMs).toBeGreaterThan(50_000);
        expect(resetMs).toBeLessThanOrEqual(60_000);
      }
      for (let i = 0; i < 2; i++) {
        const { count, resetMs } = await store.rateLimits.peek(bucket);
        expect(count).toBe(3);
        expect(resetMs).toBeGreaterThan(50_000);
        expect(resetMs).toBeLessThanOrEqual(60_000);
      }
      expect((await store.rateLimits.hit(id('login:127.0.0.2'), 60_000)).count).toBe(1);
    });
  });

  describe('single-use values', () => {
    it('stores a value once, and gives it to the first take only', async () => {
      const code = id('code');
      expect(await store.singleUse.put(code, 'first', 60_000)).toBe(true);
      expect(await store.singleUse.put(code, 'second', 60_000)).toBe(false);
      expect(await store.singleUse.take(code)).toBe('first');
      expect(await store.singleUse.take(code)).toBeNull();
      expect(await store.singleUse.take(id('code'))).toBeNull();
    });
  });

  describe('automation tokens', () => {
    it('creates a token once per name, lists, finds and removes it, telling every node', async () => {
      const [team, token, other] = [id('team'), id('at'), id('at')];
      expect(await store.automationTokens.create(team, 'bot', token, '{"n":1}')).toBe(true);
      expect(await store.automationTokens.create(team, 'bot', other, '{"n":2}')).toBe(false);
      expect(await store.automationTokens.get(other)).toBeNull();
      await hear((e) => e.type === 'automation-token' && e.id === token);
      expect(await store.automationTokens.get(token)).toBe('{"n":1}');
      expect(await store.automationTokens.list(team)).toEqual(new Map([['bot', '{"n":1}']]));
      expect(await store.automationTokens.teams()).toContain(team);
      await store.automationTokens.touch(new Map([[token, 1234]]));
      expect(await store.automationTokens.lastUsed([token, other])).toEqual([1234, null]);
      const before = events.filter((e) => e.type === 'automation-token' && e.id === token).length;
      expect(await store.automationTokens.remove(team, 'bot')).toBe('{"n":1}');
      await hear((e) => e.type === 'automation-token' && e.id === token, before + 1);
      expect(await store.automationTokens.remove(team, 'bot')).toBeNull();
      expect(await store.automationTokens.get(token)).toBeNull();
      expect(await store.automationTokens.list(team)).toEqual(new Map());
      expect(await store.automationTokens.teams()).not.toContain(team);
      expect(await store.automationTokens.lastUsed([token])).toEqual([null]);
    });
  });

  describe('audit', () => {
    it('appends events, reads them newest first in pages, and trims by count and by age', async () => {
      const far = Date.now() - 3_600_000;
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await store.audit.append(`{"i":${i}}`, 1000, far));
      const newest = await store.audit.read(far, null, 3);
      expect(newest.map(([, json]) => json)).toEqual(['{"i":4}', '{"i":3}', '{"i":2}']);
      const next = await store.audit.read(far, newest[2]?.[0] ?? null, 3);
      expect(next.map(([, json]) => json).slice(0, 2)).toEqual(['{"i":1}', '{"i":0}']);
      // By count: 3 kept of 6.
      await store.audit.append('{"i":5}', 3, far);
      expect((await store.audit.read(0, null, 100)).map(([, json]) => json)).toEqual([
        '{"i":5}',
        '{"i":4}',
        '{"i":3}',
      ]);
      // By age: an append that keeps nothing older than now keeps only itself.
      await new Promise((r) => setTimeout(r, 5));
      await store.audit.append('{"i":6}', 1000, Date.now());
      expect((await store.audit.read(0, null, 100)).map(([, json]) => json)).toEqual(['{"i":6}']);
      expect(ids.every((i) => /^\d+-\d+$/.test(i))).toBe(true);
    });
  });

  describe('sessions', () => {
    it('saves, reads, touches and destroys a session', async () => {
      const sid = id('sid');
      const data = sessionData(HOUR_SECONDS * 1000);
      expect(await sessions.get(store.sessions, sid)).toBeNull();
      await sessions.set(store.sessions, sid, data);
      expect(await sessions.get(store.sessions, sid)).toEqual(asStored(data));
      await sessions.touch(store.sessions, sid, sessionData(2 * HOUR_SECONDS * 1000));
      expect(await sessions.get(store.sessions, sid)).toEqual(asStored(data)); // touch moves the expiry only
      await sessions.destroy(store.sessions, sid);
      expect(await sessions.get(store.sessions, sid)).toBeNull();
      await sessions.destroy(store.sessions, sid); // destroying what is gone is no error
    });

    it('drops a session saved with a cookie that has already expired', async () => {
      const sid = id('sid');
      await sessions.set(store.sessions, sid, sessionData(HOUR_SECONDS * 1000));
      await sessions.set(store.sessions, sid, sessionData(-1_000));
      expect(await sessions.get(store.sessions, sid)).toBeNull();
    });
  });

  it('honours every TTL, and holds what it held at the start once they have all passed', async () => {
    // A store of its own: nothing the other tests left is in its count.
    const own = await open();
    const s = own.store;
    try {
      const start = await own.held();
      const [sub, other] = [id('bitbucket-cloud:user'), id('bitbucket-cloud:user')];
      const [family, theirFamily, team] = [id('sid'), id('sid'), id('team')];
      const [short, cookieless, touched] = [id('sess'), id('sess'), id('sess')];
      const [bucket, code] = [id('login:127.0.0.1'), id('code')];
      const base = Date.now();
      // Everything with a TTL of one second (the shortest a TTL in seconds can be).
      await s.grants.saveUpstream(sub, 'sealed', 1);
      await s.grants.createFamily(sub, family, 'h1', 1);
      await s.grants.rotate(family, 'h1', 'h2'); // keeps the family's lifetime
      await s.grants.createFamily(other, theirFamily, 'k1', 1);
      await s.grants.rememberSession(sub, id('sess'), 1);
      const lasting = id('sess');
      await s.grants.rememberSession(sub, lasting, HOUR_SECONDS);
      await s.grants.rememberSession(other, id('sess'), 1);
      await s.grants.saveGroups(sub, { groups: ['bitbucket-cloud:ws'], readAt: base }, 1);
      await s.grants.lock(other, 'node-a', 1_000);
      expect((await s.rateLimits.hit(bucket, 1_000)).count).toBe(1);
      await s.singleUse.put(code, 'value', 1_000);
      await sessions.set(s.sessions, short, sessionData(1_000));
      await sessions.set(s.sessions, cookieless, sessionData(null)); // the store's session TTL (1 s)
      // Without TTLs: kept until a write (teams) or a load's cutoffs (revocations) drops them.
      await s.teams.put(team, '{}', { users: [sub], groups: ['bitbucket-cloud:ws'] }, 'upsert');
      await s.teams.delete(team);
      await s.revocations.revokeFamily(family, base + 500);
      await s.revocations.revokeUser(sub, Math.floor(base / 1000));
      await s.revocations.restoreToken(id('jti'), base + 500);
      // Extended: the lease and a session live two seconds from now.
      const extended = Date.now();
      await s.grants.lock(sub, 'node-a', 1_000);
      expect(await s.grants.renew(sub, 'node-a', 2_000)).toBe(true);
      await sessions.set(s.sessions, touched, sessionData(1_000));
      await sessions.touch(s.sessions, touched, sessionData(2_000));
      const written = Date.now();
      expect(await own.held()).toBeGreaterThan(start);

      await sleepUntil(written + 1_300);
      expect(await s.grants.upstream(sub)).toBeNull();
      expect(await s.grants.inspect(family, 'h2')).toEqual({ state: 'unknown' });
      expect(await s.grants.inspect(theirFamily, 'k1')).toEqual({ state: 'unknown' });
      expect(await s.grants.groups(sub)).toBeNull();
      expect(await s.rateLimits.peek(bucket)).toEqual({ count: 0, resetMs: 0 });
      expect(await s.singleUse.take(code)).toBeNull();
      expect(await sessions.get(s.sessions, short)).toBeNull();
      expect(await sessions.get(s.sessions, cookieless)).toBeNull();
      expect(await s.grants.lock(other, 'node-b', 100)).toBe(true); // its lease ran out
      // A user's index names only the sessions that are still live.
      expect(await s.grants.forgetUser(sub)).toEqual([lasting]);
      // What was extended lives on.
      expect(Date.now()).toBeLessThan(extended + 2_000);
      expect(await s.grants.lock(sub, 'node-b', 100)).toBe(false);
      expect(await sessions.get(s.sessions, touched)).not.toBeNull();

      await sleepUntil(written + 2_300);
      expect(await sessions.get(s.sessions, touched)).toBeNull();
      expect(await s.grants.lock(sub, 'node-b', 100)).toBe(true);
      // The revocations cover no token past their ends: a load with those cutoffs drops them all.
      await s.revocations.load({
        families: base + 501,
        tokens: base + 501,
        users: Math.floor(base / 1000) + 1,
      });
      expect(await s.revocations.counts()).toEqual({ tokens: 0, families: 0, users: 0 });

      await sleepUntil(Date.now() + 300); // the last leases (100 ms) are past too
      expect(await own.held()).toBe(start);
    } finally {
      await own.close();
    }
  });

  it('tells every node of a data loss, and keeps a new mark of it for a node that missed the event', async () => {
    const before = await store.lossMarks();
    const mark = await store.reportLoss('teams');
    await hear((e) => e.type === 'data-loss' && e.kind === 'teams');
    expect(mark).not.toBe(before.teams);
    expect(await store.lossMarks()).toEqual({ ...before, teams: mark });
    const again = await store.reportLoss('revocations');
    expect(await store.lossMarks()).toEqual({ ...before, teams: mark, revocations: again });
    expect(await store.reportLoss('teams')).not.toBe(mark);
  });
});
