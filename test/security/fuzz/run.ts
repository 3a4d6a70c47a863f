import { generateSigningKey, type SigningKey } from '../../../lib/tokens';
import { newVerifier } from '../../../lib/tokens/pkce';
import { Vault } from '../../../lib/tokens/vault';
import { tokenRequest } from '../../harness/login';
import { exchange, type Answer } from '../raw-http';
import { Arena, claimsOf, type MintedCode } from './arena';
import { type LiveState, type Plan } from './plans';
import { materialise, type PendingLogin, type Prepared, type Sent } from './materialise';
import { deliveryOf, grantOf, jsonOf, problemsOf } from './oracle';

// ---------------------------------------------------------------------------------------------------
// Running a plan, and keeping the arena's model current.
// ---------------------------------------------------------------------------------------------------

/** A login started on a fresh browser: the state Bitbucket would send back, and its sealed cookie. */
async function startedLogin(arena: Arena): Promise<{ state: string; name: string; value: string }> {
  const res = await fetch(`${arena.url}/sky/login`, { redirect: 'manual' });
  await res.arrayBuffer();
  const state = new URL(res.headers.get('location') ?? '').searchParams.get('state') ?? '';
  const pair = (res.headers.getSetCookie().find((c) => c.startsWith('sky_login_')) ?? '').split(';')[0] ?? '';
  const eq = pair.indexOf('=');
  if (!state || eq < 0) throw new Error(`${arena.name}: GET /sky/login gave no state or no login cookie`);
  return { state, name: pair.slice(0, eq), value: pair.slice(eq + 1) };
}

/** A signing key no node of the fuzz has: what another deployment would seal with. */
let foreignKey: SigningKey | undefined;

/** The content of a login cookie sealed again, by `key`, after `change`. */
function resealed(
  arena: Arena,
  name: string,
  value: string,
  key: SigningKey,
  change = (_: Record<string, unknown>) => {},
): string {
  const context = `login-state ${name}`;
  const pending = JSON.parse(
    new Vault(arena.key, 'login-state').open(decodeURIComponent(value), context),
  ) as Record<string, unknown>;
  change(pending);
  return encodeURIComponent(new Vault(key, 'login-state').seal(JSON.stringify(pending), context));
}

async function pendingLogin(arena: Arena, variant: LiveState): Promise<PendingLogin> {
  const { state, name, value } = await startedLogin(arena);
  const login = { variant, state, sentState: state, name, cookie: value as string | null };
  switch (variant) {
    case 'tampered':
      login.sentState = `${state.slice(0, -2)}${state.endsWith('xx') ? 'yy' : 'xx'}`;
      break;
    case 'cookie-tampered': {
      const raw = decodeURIComponent(value);
      const i = raw.length - 5;
      login.cookie = encodeURIComponent(`${raw.slice(0, i)}${raw[i] === 'A' ? 'B' : 'A'}${raw.slice(i + 1)}`);
      break;
    }
    case 'expired':
      login.cookie = resealed(arena, name, value, arena.key, (p) => {
        p['e'] = Date.now() - 1_000;
      });
      break;
    case 'foreign':
      login.cookie = resealed(arena, name, value, (foreignKey ??= generateSigningKey()));
      break;
    case 'swapped':
      // Another login's cookie under this login's name: it opens under neither.
      login.cookie = (await startedLogin(arena)).value;
      break;
    case 'replayed': {
      // Used once already (Bitbucket's code was refused, but the state is spent on every node).
      const first = await fetch(
        `${arena.url}/sky/issuer/callback?code=fz-first-use&state=${encodeURIComponent(state)}`,
        { headers: { cookie: `${name}=${value}` }, redirect: 'manual' },
      );
      await first.arrayBuffer();
      if (first.status !== 400)
        throw new Error(`${arena.name}: a first use of a login answered ${first.status}`);
      break;
    }
    case 'no-cookie':
      login.cookie = null;
      break;
    default:
      break;
  }
  return login;
}

async function prepare(arena: Arena, plan: Plan): Promise<Prepared> {
  const login = plan.liveState === 'none' ? null : await pendingLogin(arena, plan.liveState);
  const codes: MintedCode[] = [];
  if (plan.body?.t === 'form') {
    for (const [, v] of plan.body.params) {
      if (v.t === 'code' && v.state === 'live') codes.push(await arena.mintCode(v.who));
    }
  }
  return { login, codes };
}

/** Answers seen per arena, route, method and status: SKY_FUZZ_STATS=1 prints them, to judge the generators. */
export const outcomes = new Map<string, number>();

export async function send(arena: Arena, plan: Plan): Promise<void> {
  const prepared = await prepare(arena, plan);
  const { request, sent } = materialise(arena, plan, prepared);
  const answer = await exchange(arena.port, plan.method, request);
  const what =
    sent.codes.length > 0
      ? `${sent.kind}(code)`
      : sent.login
        ? `${sent.kind}(${sent.login.variant})`
        : sent.kind;
  const key = `${arena.name.slice(0, 4)} ${what} ${plan.method} ${answer.status}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  const problems = problemsOf(arena, sent, answer);
  if (problems.length > 0) {
    throw new Error(
      `${problems.join('; ')}\n  ${arena.name}: ${plan.method} ${plan.path.slice(0, 100)}${plan.query.slice(0, 100)} → ${answer.status}\n  body: ${answer.body.slice(0, 300)}`,
    );
  }
  await follow(arena, sent, answer);
}

/** What a successful request changed: revoked tokens, rotated refresh tokens, changed teams. */
async function follow(arena: Arena, s: Sent, a: Answer): Promise<void> {
  const loggedOut = a.status === 204 || a.status === 303;
  if (s.kind === 'logout' && ['GET', 'HEAD', 'POST'].includes(s.plan.method) && loggedOut) {
    // The presented token is revoked with its refresh family, and a session sent along is destroyed.
    for (const p of s.placed) {
      if (await arena.refuses(p.token)) arena.dead[p.who].push(p.token);
      if (p.source === 'browser') await arena.loginBrowser(p.who);
      else await arena.loginCli(p.who);
    }
    for (const who of s.sessions) await arena.loginBrowser(who);
  }
  const fail = (what: string): never => {
    throw new Error(`${arena.name}: ${what}`);
  };
  if (s.kind === 'logout' && s.plan.method === 'GET' && a.status === 200) {
    // The page only asks: the token that asked still works.
    for (const p of s.placed) {
      if (p.via === 'cookie' && (await arena.refuses(p.token))) fail('a cookie-only GET /sky/logout revoked');
    }
  }
  if (s.kind === 'token') {
    const grant = grantOf(s);
    const granted = jsonOf(a) as { access_token?: string; refresh_token?: string } | undefined;
    if (a.status === 200 && grant?.kind === 'refresh' && granted?.access_token && granted.refresh_token) {
      arena.spent.push({ who: grant.who, token: arena.people[grant.who].cli.refresh });
      arena.people[grant.who].cli = {
        token: granted.access_token,
        csrf: String(claimsOf(granted.access_token)['csrf']),
        refresh: granted.refresh_token,
      };
    } else if (s.refresh.length > 0) {
      // A refused redemption may have ended the family (reuse of a spent one): start a new one.
      for (const who of new Set(s.refresh.map((r) => r.who))) await arena.loginCli(who);
    }
    // Every live code the request carried is spent now: by its redemption, or here by a wrong verifier.
    for (const c of s.codes) {
      if (c.state !== 'live') continue;
      const redeemed = a.status === 200 && grant?.kind === 'code' && grant.code === c.code;
      const again = await tokenRequest(arena.url, {
        grant_type: 'authorization_code',
        code: c.code,
        code_verifier: redeemed ? c.verifier : newVerifier(),
      });
      if (again.status !== 400 || again.body['error'] !== 'invalid_grant') {
        fail(`a code presented again (${redeemed ? 'redeemed' : 'maybe unused'}) answered ${again.status}`);
      }
      arena.spentCodes.push({ who: c.who, code: c.code, verifier: c.verifier });
    }
  }
  if (s.kind === 'fly' && a.status === 200) {
    const delivery = deliveryOf(a.body);
    const subs = s.placed.map((p) => arena.people[p.who].sub);
    if (delivery?.kind === 'code' && s.fly && a.body.includes(s.fly.challenge)) {
      // The code is the person's, once, and only with the verifier of its challenge.
      const form = { grant_type: 'authorization_code', code: delivery.value, code_verifier: s.fly.verifier };
      const redeemed = await tokenRequest(arena.url, form);
      const sub = claimsOf(String(redeemed.body['access_token'] ?? ''))['sub'];
      if (redeemed.status !== 200 || !subs.includes(String(sub)))
        fail(`a delivered code redeemed: ${redeemed.status} for ${String(sub)}`);
      if ((await tokenRequest(arena.url, form)).status !== 400) fail('a delivered code was redeemed twice');
    }
    if (delivery?.kind === 'token') {
      const res = await fetch(`${arena.url}/api/v1/user`, {
        headers: { authorization: `Bearer ${delivery.value.replace(/^bearer /, '')}` },
      });
      const user = (await res.json()) as { sub?: unknown };
      if (res.status !== 200 || !subs.includes(String(user.sub)))
        fail(`a delivered fly token: ${res.status}`);
    }
  }
  if (s.kind === 'team' && s.team !== undefined && a.status >= 200 && a.status < 300) {
    if (s.plan.method === 'PUT') {
      // What was saved reads back as saved: the store re-validates every config it reads.
      const res = await fetch(`${arena.url}/api/v1/teams/${encodeURIComponent(s.team)}`, {
        headers: { authorization: `Bearer ${arena.people.alice.cli.token}` },
      });
      const saved = jsonOf(a);
      const read = (await res.json()) as unknown;
      if (res.status !== 200 || JSON.stringify(read) !== JSON.stringify(saved)) {
        throw new Error(
          `${arena.name}: team ${s.team} was saved (${a.status}) but reads back ${res.status} ${JSON.stringify(read).slice(0, 200)}`,
        );
      }
    }
    if (s.team === 'builders' && (s.plan.method === 'PUT' || s.plan.method === 'DELETE')) {
      await arena.restoreBuilders();
    }
  }
}
