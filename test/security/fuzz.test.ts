import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { Request, Response } from 'express';
import fc from 'fast-check';
import { stringify as stringifyYaml } from 'yaml';
import { run } from '../../lib/cli/main';
import { isSkyError } from '../../lib/errors';
import { requiresAdmin, requiresTeamRole } from '../../lib/http/guards';
import { startWebNode, type WebNode } from '../../lib/server';
import { parseRolesYaml, parseTeamAuth, ROLES, validateTeamName, type TeamAuth } from '../../lib/teams/auth';
import { FakeBitbucket } from '../../lib/testing';
import { Capture } from '../cli/cli';
import { LONG, recordFigures } from '../harness/figures';
import { freePort } from '../harness/global-setup';
import { loginAs } from '../harness/login';
import { startNode, type TestNode } from '../harness/node';
import {
  Arena,
  cleanPlans,
  families,
  isApiError,
  isOAuthError,
  jsonOf,
  outcomes,
  roleName,
  safeEntry,
  send,
  teamConfig,
  teamParam,
  YAMLISH,
} from './fuzz';
import { exchange, sent, wire, type Answer } from './raw-http';

/**
 * Property-based fuzzing of the hardening issue: "never a crash, never an unexpected 5xx, never a
 * grant". Every route of a running node (real Redis, the fake Bitbucket) and of the embedded web node
 * gets arbitrary methods, paths, queries, headers, cookies and bodies, with real credentials of alice
 * (admin), bob (owner of builders) and carol (viewer of builders) mixed in. The team-config parsers and
 * the CLI get arbitrary input too. SKY_LONG_TESTS=1 tries ten times as many inputs.
 */

const SCALE = LONG ? 10 : 1;
/** SKY_FUZZ_SEED=<seed fast-check printed> replays a failing run. */
const SEED = process.env['SKY_FUZZ_SEED'] ? { seed: Number(process.env['SKY_FUZZ_SEED']) } : {};
const runs = (n: number): number => n * SCALE;
jest.setTimeout(LONG ? 900_000 : 60_000);

/** What was tried, for docs/SECURITY.md; written only when every property held. */
const tried = { names: 0, configs: 0, yaml: 0, cli: 0 };
const passed = new Set<string>();

// ---------------------------------------------------------------------------------------------------
// The arenas: the test node (Redis) with host routes behind the guards, and the embedded web node.
// ---------------------------------------------------------------------------------------------------

let fake: FakeBitbucket;
let node: TestNode;
let web: WebNode;
let arenas: Arena[] = [];

/** Each node's signing key, known to the test: it seals login cookies of its own (an expired one, say). */
const pem = (): string =>
  generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
const nodeKey = pem();
const webKey = pem();

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({
    fake,
    // Thousands of login and token requests from one address: the rate limiter would answer 429.
    options: { rateLimit: { perMinute: 0 }, signingKey: nodeKey },
    routes: (app) => {
      const ok = (req: Request, res: Response): void => {
        res.json({ team: req.params['team'] ?? null });
      };
      app.get('/host/teams/:team/pipelines', requiresTeamRole('viewer'), ok);
      app.post('/host/teams/:team/pipelines', requiresTeamRole('member'), ok);
      app.get('/host/admin', requiresAdmin(), ok);
    },
  });
  const port = await freePort();
  const keyFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'sky-fuzz-key-')), 'signing_key.pem');
  writeFileSync(keyFile, webKey, { mode: 0o600 });
  web = await startWebNode({
    CONCOURSE_BIND_IP: '127.0.0.1',
    CONCOURSE_BIND_PORT: String(port),
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
    CONCOURSE_SESSION_SIGNING_KEY: keyFile,
    SKY_RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'silent',
  });
  if (!web.fake) throw new Error('the web node should run its own fake Bitbucket');
  arenas = [
    new Arena('test node (Redis)', node.url, fake, true, nodeKey),
    new Arena('web node (in memory)', web.url, web.fake, false, webKey),
  ];
  for (const arena of arenas) await arena.setUp();
}, 60_000);

afterAll(async () => {
  await web?.close();
  await node?.close();
  await fake?.stop();
});

/** Requests per family and arena: the Redis-backed test node gets most, the embedded web node a share. */
const PER_FAMILY: Record<string, number> = {
  'test node (Redis)': runs(100),
  'web node (in memory)': runs(30),
};

describe.each(['test node (Redis)', 'web node (in memory)'])('%s', (arenaName) => {
  test.each(Object.keys(families))(
    'fuzzed %s requests: no crash, no 5xx, no wrong grant, documented error shapes, nothing echoed',
    async (family) => {
      const arena = arenas.find((a) => a.name === arenaName);
      const fuzzed = families[family as keyof typeof families];
      const clean = cleanPlans[family as keyof typeof families];
      const arb = clean ? fc.oneof(fuzzed, clean) : fuzzed;
      if (!arena) throw new Error(`no arena ${arenaName}`);
      await fc.assert(
        fc.asyncProperty(arb, (plan) => send(arena, plan)),
        { numRuns: PER_FAMILY[arenaName] ?? 10, endOnFailure: true, ...SEED },
      );
      // The node still answers after everything above.
      expect(await arena.healthy()).toBe(true);
      passed.add(`${arenaName} ${family}`);
    },
  );
});

// ---------------------------------------------------------------------------------------------------
// Size limits.
// ---------------------------------------------------------------------------------------------------

describe('size limits', () => {
  const raw = (
    arena: Arena,
    method: string,
    target: string,
    headers: [string, string][],
    body: Buffer | null,
  ): Promise<Answer> => exchange(arena.port, method, wire(arena.port, method, target, headers, body));
  const form: [string, string] = ['Content-Type', 'application/x-www-form-urlencoded'];

  test('a body over the limit is 413 in each endpoint’s own error shape; just under it is accepted', async () => {
    for (const arena of arenas) {
      const put = (body: string): Promise<Answer> =>
        raw(
          arena,
          'PUT',
          '/api/v1/teams/fz-big',
          [
            ['Authorization', `Bearer ${arena.people.alice.cli.token}`],
            ['Content-Type', 'application/json'],
          ],
          Buffer.from(body),
        );
      const small = '{"auth":{"owner":{"users":["alice"]}}}';
      expect([200, 201]).toContain((await put(small + ' '.repeat(1024 * 1024 - small.length - 10))).status);
      const over = await put(small + ' '.repeat(1024 * 1024));
      expect(over.status).toBe(413);
      expect(jsonOf(over)).toEqual({ error: 'payload_too_large', message: 'request body too large' });

      const refresh = `grant_type=refresh_token&refresh_token=${'x'.repeat(9 * 1024)}`;
      const token = await raw(arena, 'POST', '/sky/token', [form], Buffer.from(refresh));
      expect(token.status).toBe(413);
      expect(jsonOf(token)).toEqual({
        error: 'invalid_request',
        error_description: 'request body too large',
      });
      const many = Array.from({ length: 11 }, (_, i) => `p${i}=1`).join('&');
      const params = await raw(arena, 'POST', '/sky/token', [form], Buffer.from(many));
      expect(params.status).toBe(413);
      expect(isOAuthError(params)).toBe(true);

      const csrf = `csrf_token=${'x'.repeat(5000)}`;
      const logout = await raw(
        arena,
        'POST',
        '/sky/logout',
        [form, ['Accept', 'application/json']],
        Buffer.from(csrf),
      );
      expect(logout.status).toBe(413);
      expect(isApiError(logout)).toBe(true);
      // The fly click's form takes 4 KB too; its errors are pages.
      const fly = await raw(arena, 'POST', '/sky/fly', [form], Buffer.from(csrf));
      expect(fly.status).toBe(413);
      expect(fly.headers.get('content-type')?.join()).toMatch(/^text\/html/);
      expect(await arena.healthy()).toBe(true);
    }
    passed.add('413');
  });

  test('a header block over the limit is 431: 16 KiB on a default node, 128 KiB on the web node', async () => {
    const [testNode, webNode] = arenas;
    if (!testNode || !webNode) throw new Error('no arenas');
    const pad = (n: number): [string, string] => ['X-Pad', 'p'.repeat(n)];
    expect((await raw(testNode, 'GET', '/api/v1/user', [pad(12 * 1024)], null)).status).toBe(401);
    expect((await raw(testNode, 'GET', '/api/v1/user', [pad(17 * 1024)], null)).status).toBe(431);
    const cookies = Array.from({ length: 10 }, (_, i) => `skymarshal_auth${i}=${'x'.repeat(3900)}`).join(
      '; ',
    );
    expect((await raw(testNode, 'GET', '/api/v1/user', [['Cookie', cookies]], null)).status).toBe(431);

    // The web node lets a token split over many cookies through, up to 128 KiB of headers.
    expect((await raw(webNode, 'GET', '/api/v1/user', [['Cookie', cookies]], null)).status).toBe(401);
    expect((await raw(webNode, 'GET', '/api/v1/user', [pad(120 * 1024)], null)).status).toBe(401);
    expect((await raw(webNode, 'GET', '/api/v1/user', [pad(129 * 1024)], null)).status).toBe(431);
    const manyLines = Array.from({ length: 300 }, (_, i): [string, string] => [`X-H${i}`, 'v'.repeat(500)]);
    expect((await raw(webNode, 'GET', '/api/v1/user', manyLines, null)).status).toBe(431);
    // A huge path is part of the header block too.
    expect((await raw(testNode, 'GET', `/api/v1/teams/${'a'.repeat(20 * 1024)}`, [], null)).status).toBe(431);

    for (const arena of arenas) expect(await arena.healthy()).toBe(true);
    passed.add('431');
  });
});

// ---------------------------------------------------------------------------------------------------
// What the fuzzing found, pinned down (each was a bug in sky, fixed in lib/).
// ---------------------------------------------------------------------------------------------------

describe('regressions found by the fuzzing', () => {
  test('a team entry of 241-256 characters is saved and reads back (it used to vanish on read)', async () => {
    const [arena] = arenas;
    if (!arena) throw new Error('no arena');
    const alice = { authorization: `Bearer ${arena.people.alice.cli.token}` };
    const auth = {
      owner: { users: ['alice', 'z'.repeat(256)], groups: [`bitbucket-cloud:${'g'.repeat(256)}`] },
    };
    const put = await fetch(`${arena.url}/api/v1/teams/fz-long`, {
      method: 'PUT',
      headers: { ...alice, 'content-type': 'application/json' },
      body: JSON.stringify({ auth }),
    });
    expect(put.status).toBe(201);
    const saved = (await put.json()) as unknown;
    const read = await fetch(`${arena.url}/api/v1/teams/fz-long`, { headers: alice });
    expect(read.status).toBe(200);
    expect(await read.json()).toEqual(saved);
    // 257 characters after the prefix is still refused.
    const long = await fetch(`${arena.url}/api/v1/teams/fz-long`, {
      method: 'PUT',
      headers: { ...alice, 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { owner: { users: [`bitbucket-cloud:${'z'.repeat(257)}`] } } }),
    });
    expect(long.status).toBe(400);
    passed.add('regression long entry');
  });

  test('sky routes are case-sensitive; wrong methods get 405 with Allow; unknown /sky paths 404', async () => {
    const [arena] = arenas;
    if (!arena) throw new Error('no arena');
    // /SKY/LOGIN once reached the login handler without a session (its cookie path is case-sensitive): a 500.
    for (const path of ['/SKY/LOGIN?redirect_uri=%2Fx', '/Sky/Issuer/Callback', '/API/V1/USER']) {
      const res = await fetch(`${arena.url}${path}`, { redirect: 'manual' });
      expect(res.status).toBe(404);
    }
    const token = await fetch(`${arena.url}/sky/token`);
    expect(token.status).toBe(405);
    expect(token.headers.get('allow')).toBe('POST');
    expect(await token.json()).toEqual({
      error: 'invalid_request',
      error_description: 'GET is not allowed here: use POST',
    });
    const user = await fetch(`${arena.url}/api/v1/user`, { method: 'DELETE' });
    expect(user.status).toBe(405);
    expect(user.headers.get('allow')).toBe('GET');
    expect(await user.json()).toEqual({
      error: 'method_not_allowed',
      message: 'DELETE is not allowed here: use GET',
    });
    const team = await fetch(`${arena.url}/api/v1/teams/builders`, { method: 'PATCH' });
    expect(team.status).toBe(405);
    expect(team.headers.get('allow')).toBe('GET, PUT, DELETE');
    const fly = await fetch(`${arena.url}/sky/fly`, { headers: { accept: 'application/json' } });
    expect(fly.status).toBe(405);
    expect(fly.headers.get('allow')).toBe('POST');
    expect(fly.headers.get('content-type')).toMatch(/^text\/html/);
    const unknown = await fetch(`${arena.url}/sky/nothing/here`, { headers: { accept: 'text/html' } });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toMatch(/^text\/html/);
    passed.add('regression case');
  });
});

describe('found while extending the fuzzing for issue #13 (lib/ not fixed yet)', () => {
  test('a cookie-only HEAD /sky/logout ends nothing, as a cookie-only GET (it logged out without CSRF)', async () => {
    for (const arena of arenas) {
      const leaving = await loginAs(arena.url, arena.fake, 'carol');
      const cookie = `skymarshal_auth=${encodeURIComponent(`bearer ${leaving.token}`)}`;
      const get = await fetch(`${arena.url}/sky/logout`, { headers: { cookie }, redirect: 'manual' });
      expect(get.status).toBe(200);
      expect(await arena.refuses(leaving.token)).toBe(false);
      const head = await fetch(`${arena.url}/sky/logout`, {
        method: 'HEAD',
        headers: { cookie },
        redirect: 'manual',
      });
      expect({ status: head.status, revoked: await arena.refuses(leaving.token) }).toEqual({
        status: 200,
        revoked: false,
      });
    }
    passed.add('regression head logout');
  });
});

// ---------------------------------------------------------------------------------------------------
// Team names and configs through lib/teams/auth.
// ---------------------------------------------------------------------------------------------------

/** Runs `fn`; anything thrown must be SkyError invalid_team (status 400). */
function onlyInvalidTeam<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (!isSkyError(err) || err.code !== 'invalid_team' || err.status !== 400) {
      throw new Error(`threw something other than SkyError invalid_team: ${String(err)}`, { cause: err });
    }
    return undefined;
  }
}

/** A valid config is normalised: known roles, lower-case prefixed unique entries, and it re-parses to itself. */
function expectNormalised(auth: TeamAuth): void {
  const prefix = 'bitbucket-cloud:';
  for (const [role, m] of Object.entries(auth)) {
    expect(ROLES).toContain(role);
    if (!m) throw new Error(`role ${role} has no members`);
    expect(m.users.length + m.groups.length).toBeGreaterThan(0);
    for (const list of [m.users, m.groups]) {
      expect(new Set(list).size).toBe(list.length);
      for (const entry of list) {
        expect(entry.startsWith(prefix)).toBe(true);
        expect(entry.length).toBeGreaterThan(prefix.length);
        expect(entry).toBe(entry.toLowerCase());
        expect(entry).toBe(entry.trim());
      }
    }
  }
  // The team store validates every config again when it reads it: what was accepted must read back.
  expect(parseTeamAuth(JSON.parse(JSON.stringify(auth)))).toEqual(auth);
}

describe('lib/teams/auth', () => {
  test('validateTeamName: anything in, the name back or SkyError invalid_team', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'binary' }),
          teamParam(),
          fc.anything({ withNullPrototype: true, withBoxedValues: true, withObjectString: true }),
        ),
        (name) => {
          tried.names++;
          const out = onlyInvalidTeam(() => validateTeamName(name));
          if (out !== undefined) {
            expect(out).toBe(name);
            expect(out).toMatch(/^[a-z0-9][a-z0-9._-]{0,63}$/);
          }
        },
      ),
      { numRuns: runs(1000) },
    );
    // It used to throw a TypeError: String() of an object without a prototype.
    expect(() => validateTeamName(Object.create(null))).toThrow(
      expect.objectContaining({
        code: 'invalid_team',
        message: expect.stringMatching(/^invalid team name 'object'/),
      }),
    );
    passed.add('names');
  });

  test('parseTeamAuth: any config in, a normalised config or SkyError invalid_team', () => {
    fc.assert(
      fc.property(teamConfig, (raw) => {
        tried.configs++;
        const auth = onlyInvalidTeam(() => parseTeamAuth(raw));
        if (auth !== undefined) expectNormalised(auth);
      }),
      { numRuns: runs(1000) },
    );
    passed.add('configs');
  });

  test('parseRolesYaml: any text in, a normalised config or SkyError invalid_team', () => {
    const roleEntry = fc.record(
      {
        name: roleName,
        'bitbucket-cloud': fc.oneof(
          fc.record(
            { users: fc.array(safeEntry, { maxLength: 4 }), teams: fc.array(safeEntry, { maxLength: 4 }) },
            { requiredKeys: [] },
          ),
          fc.jsonValue({ maxDepth: 2 }),
        ),
        extra: fc.string(),
      },
      { requiredKeys: ['name'] },
    );
    const documents = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.array(roleEntry, { maxLength: 4 }).map((roles) => stringifyYaml({ roles })),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(
            fc.array(roleEntry, { maxLength: 3 }).map((roles) => stringifyYaml({ roles })),
            fc.nat(),
            fc.string({ maxLength: 5 }),
          )
          .map(
            ([doc, at, junk]) =>
              doc.slice(0, at % (doc.length + 1)) + junk + doc.slice(at % (doc.length + 1)),
          ),
      },
      { weight: 1, arbitrary: fc.jsonValue().map((v) => stringifyYaml(v)) },
      { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          ...YAMLISH,
          'roles: &r [*r]',
          `a: &a ["x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nroles: [*c,*c,*c,*c,*c,*c,*c,*c,*c]`,
          'roles:\n- !!binary aGVsbG8=\n',
          'roles:\n- name: !!js/undefined\n',
          `roles: ${'['.repeat(2000)}`,
          `roles: ${'{a: '.repeat(500)}`,
          'roles:\n- name: owner\n  bitbucket-cloud: {users: [alice]}\n- name: owner\n  bitbucket-cloud: {users: [dave]}\n',
          'roles:\n- name: owner\n  __proto__: {users: [alice]}\n',
          'roles:\n- name: owner\n  bitbucket-cloud:\n    __proto__: [alice]\n',
          '\uFEFFroles: []',
          '%YAML 1.1\n---\nroles: []',
        ),
      },
    );
    fc.assert(
      fc.property(documents, (text) => {
        tried.yaml++;
        const auth = onlyInvalidTeam(() => parseRolesYaml(text));
        if (auth !== undefined) expectNormalised(auth);
      }),
      { numRuns: runs(500) },
    );
    passed.add('yaml');
  });
});

// ---------------------------------------------------------------------------------------------------
// The CLI: run(argv, io) with arbitrary arguments, against targets that cannot be reached.
// ---------------------------------------------------------------------------------------------------

describe('the sky CLI', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-fuzz-cli-'));
  const skyrc = path.join(dir, '.skyrc');
  const rolesFile = path.join(dir, 'roles.yml');
  const SEED = stringifyYaml({
    targets: {
      ci: {
        api: 'http://127.0.0.1:1',
        team: 'main',
        token: { type: 'bearer', value: 'a.b.c' },
        refresh_token: 'r.s',
      },
      down: { api: 'https://127.0.0.1:1/ci', team: 'builders' },
      odd: { api: 'not a url', team: 'main', token: { type: 'bearer', value: 'x' } },
    },
  });
  /** The commands and their aliases (SPEC §9). */
  const COMMAND_WORDS = [
    'login',
    'l',
    'logout',
    'set-team',
    'st',
    'teams',
    't',
    'get-team',
    'gt',
    'destroy-team',
    'dt',
    'userinfo',
    'targets',
  ];
  const WORDS = [
    ...COMMAND_WORDS,
    'ts',
    '-t',
    '--target',
    '--target=ci',
    '-tci',
    '-c',
    '--concourse-url',
    '-n',
    '--team-name',
    '-b',
    '--open-browser',
    '--port',
    '-h',
    '--help',
    '-v',
    '--version',
    '--print-table-headers',
    '--json',
    '-j',
    '-d',
    '--details',
    '-a',
    '--all',
    '--non-interactive',
    '--bitbucket-cloud-user',
    '--bitbucket-cloud-team',
    '--config',
    '--',
    '-',
    '--=',
    '--target=',
    '---',
    'ci',
    'down',
    'odd',
    'nowhere',
    '__proto__',
    'constructor',
    'toString',
    'main',
    'builders',
    'Main',
    'http://127.0.0.1:1',
    'https://127.0.0.1:1/ci',
    'http://user:pw@127.0.0.1:1',
    'ftp://127.0.0.1:1',
    'http://127.0.0.1:1/?x=1',
    '0',
    '1023',
    '65536',
    'abc',
    rolesFile,
    path.join(dir, 'missing.yml'),
    dir,
  ];
  const word = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...WORDS) },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 10 }) },
  );
  // Mostly the shape of a real command line (target, command, its flags with values), some pure noise.
  const valueWord = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        'http://127.0.0.1:1',
        'https://127.0.0.1:1/ci',
        'http://user:pw@127.0.0.1:1',
        'ftp://127.0.0.1:1',
        'http://127.0.0.1:1/?x=1',
        'builders',
        'main',
        'Main',
        'fz-cli',
        '65000',
        '1023',
        '65536',
        'abc',
        'alice',
        'acme/devs',
        '',
        rolesFile,
        path.join(dir, 'missing.yml'),
        dir,
      ),
    },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  );
  const structured = fc
    .tuple(
      fc.oneof(
        fc.constant<string[]>([]),
        fc
          .tuple(
            fc.constantFrom('-t', '--target'),
            fc.constantFrom('ci', 'down', 'odd', 'nowhere', '__proto__', 'constructor', 'toString', ''),
          )
          .map(([flag, v]) => [flag, v]),
        fc.constantFrom(['--target=ci'], ['-tci'], ['-tdown']),
      ),
      fc.constantFrom(...COMMAND_WORDS),
      fc.array(
        fc.oneof(
          fc
            .tuple(
              fc.constantFrom(
                '-c',
                '--concourse-url',
                '-n',
                '--team-name',
                '--port',
                '--bitbucket-cloud-user',
                '--bitbucket-cloud-team',
                '--config',
              ),
              valueWord,
            )
            .map(([flag, v]) => [flag, v]),
          fc
            .constantFrom('-b', '--json', '-j', '-d', '--details', '-a', '--all', '--non-interactive', '-h')
            .map((flag) => [flag]),
        ),
        { maxLength: 4 },
      ),
    )
    .map(([target, command, rest]) => [...target, command, ...rest.flat()]);
  const argvArb = fc.oneof(
    { weight: 3, arbitrary: structured },
    { weight: 1, arbitrary: fc.array(word, { maxLength: 8 }) },
  );
  const stdinLines = fc.array(
    fc.constantFrom('y', 'n', 'yes', '', 'main', 'builders', 'bearer a.b.c', '   '),
    { maxLength: 3 },
  );
  const STACK = /^\s+at .+(:\d+:\d+\)?|\(native\))$/m;

  test('run(argv) always resolves to an exit code, never throws, never prints a stack trace', async () => {
    writeFileSync(rolesFile, 'roles:\n- name: owner\n  bitbucket-cloud:\n    users: [alice]\n');
    await fc.assert(
      fc.asyncProperty(argvArb, stdinLines, async (argv, lines) => {
        tried.cli++;
        writeFileSync(skyrc, SEED, { mode: 0o600 });
        const stdin = new PassThrough();
        const stdout = new Capture();
        const stderr = new Capture();
        // The last line is a token, so a login waiting for one is handed one and goes on (to a dead target).
        stdin.end([...lines, 'bearer a.b.c', ''].join('\n'));
        const io = { stdin, stdout, stderr, env: { SKYRC: skyrc, BROWSER: '/bin/true', HOME: dir } };
        let timer: NodeJS.Timeout | undefined;
        const code = await Promise.race([
          run(argv, io),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`sky ${argv.join(' ')} did not finish`)), 10_000);
          }),
        ]).finally(() => clearTimeout(timer));
        expect([0, 1, 2]).toContain(code);
        expect(stderr.text).not.toMatch(STACK);
        expect(stdout.text).not.toMatch(STACK);
        if (code !== 0) expect(stderr.text.trim()).not.toBe('');
        const said = (stderr.text.split('\n')[0] ?? '')
          .replace(/'[^']*'|`[^']*'|\[[^\]]*\]/g, '…')
          .slice(0, 60);
        outcomes.set(`cli ${code} ${said}`, (outcomes.get(`cli ${code} ${said}`) ?? 0) + 1);
      }),
      { numRuns: runs(150) },
    );
    passed.add('cli');
  });

  test('regressions: a saved URL that is not one, and targets named like Object.prototype members', async () => {
    writeFileSync(
      skyrc,
      stringifyYaml({
        targets: {
          odd: { api: 'not a url', team: 'main' },
          ['__proto__']: {
            api: 'http://127.0.0.1:1',
            team: 'main',
            token: { type: 'bearer', value: 'a.b.c' },
          },
        },
      }),
      { mode: 0o600 },
    );
    const sky = async (argv: string[]): Promise<{ code: number; out: string; err: string }> => {
      const stdin = new PassThrough();
      stdin.end('bearer a.b.c\n');
      const stdout = new Capture();
      const stderr = new Capture();
      const code = await run(argv, { stdin, stdout, stderr, env: { SKYRC: skyrc, HOME: dir } });
      return { code, out: stdout.text, err: stderr.text };
    };
    // It said "error: Invalid URL" (a TypeError from new URL).
    expect(await sky(['-t', 'odd', 'login'])).toMatchObject({
      code: 1,
      err: expect.stringContaining("invalid URL 'not a url'"),
    });
    // It found Object.prototype.toString and said "not logged in".
    expect(await sky(['-t', 'toString', 'teams'])).toMatchObject({
      code: 1,
      err: 'error: unknown target: toString\n',
    });
    // A target called __proto__ is a target like any other: listed, and used.
    expect((await sky(['targets'])).out).toMatch(/^__proto__\s+http:\/\/127\.0\.0\.1:1\s+main/m);
    expect((await sky(['-t', '__proto__', 'userinfo'])).err).toMatch(
      /^could not reach the CI server called __proto__/,
    );
    passed.add('cli regressions');
  });
});

afterAll(() => {
  if (process.env['SKY_FUZZ_STATS'] === '1') {
    console.log(
      [...outcomes]
        .sort()
        .map(([k, n]) => `${k}: ${n}`)
        .join('\n'),
    );
  }
  // Each property adds itself to `passed` at its very end: a failure anywhere means no figures.
  const expected = arenas.length * Object.keys(families).length + 2 + 2 + 1 + 3 + 2;
  if (passed.size === expected) {
    recordFigures('Fuzzing', {
      'HTTP requests tried': sent.requests,
      'team names tried': tried.names,
      'team configs tried': tried.configs,
      'roles YAML documents tried': tried.yaml,
      'CLI argument lists tried': tried.cli,
      crashes: 0,
      'unexpected 5xx': 0,
      'wrong grants': 0,
    });
  }
});
