import { type FakeBitbucket } from '../../../lib/testing';
import { loadSigningKey, type SigningKey } from '../../../lib/tokens';
import { challengeOf, newNonce, newVerifier } from '../../../lib/tokens/pkce';
import { Browser } from '../../harness/browser';
import { approveFly, cliLoginAs, followFlyLogin, loginAs, tokenRequest } from '../../harness/login';

// ---------------------------------------------------------------------------------------------------
// The arena: a node, its fake Bitbucket, the people logged in to it, and what the test knows about it.
// ---------------------------------------------------------------------------------------------------

export const NAMES = ['alice', 'bob', 'carol'] as const;
export type Name = (typeof NAMES)[number];

interface Credential {
  token: string;
  csrf: string;
}
interface Person {
  sub: string;
  displayName: string;
  browser: Credential & { session: string };
  cli: Credential & { refresh: string };
}

/** bob owns it, carol (workspace acme) views it; the fuzz may change it, and the test then puts it back. */
const BUILDERS = { owner: { users: ['bob'] }, viewer: { groups: ['acme'] } };
/**
 * Principals of bob and carol: fuzzed team configs never name them, so the only team that gives them
 * anything is builders, and a grant to them anywhere else is a wrong grant.
 */
export const THEIRS = /bob|carol|b0b0|ca401|acme|widgets/i;

export const claimsOf = (token: string): Record<string, unknown> => {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
  } catch {
    return {};
  }
};

/** An authorization code of a sky CLI login, and the PKCE verifier its challenge was made from. */
export interface MintedCode {
  who: Name;
  code: string;
  verifier: string;
}

export class Arena {
  readonly people = {} as Record<Name, Person>;
  /** Tokens this node revoked (logout), newest last. */
  readonly dead = { alice: [], bob: [], carol: [] } as Record<Name, string[]>;
  /** Forged tokens that look like the person's: alg none, and a payload changed under the signature. */
  readonly forged = { alice: [], bob: [], carol: [] } as Record<Name, string[]>;
  /** Refresh tokens already rotated away (presenting one again is reuse), with their owner. */
  readonly spent: { who: Name; token: string }[] = [];
  /** Authorization codes presented once already (spent, whatever the verifier was), with their own verifier. */
  readonly spentCodes: MintedCode[] = [];
  readonly port: number;
  /** The node's signing key: the test seals login cookies with it (an expired one, say). */
  readonly key: SigningKey;

  constructor(
    readonly name: string,
    readonly url: string,
    readonly fake: FakeBitbucket,
    readonly hostRoutes: boolean,
    signingKeyPem: string,
  ) {
    this.port = Number(new URL(url).port);
    this.key = loadSigningKey(signingKeyPem);
  }

  async setUp(): Promise<void> {
    // alice (admin) first: bob and carol have no team until she puts builders.
    await this.loginBrowser('alice');
    await this.loginCli('alice');
    await this.restoreBuilders();
    for (const who of ['bob', 'carol'] as const) {
      await this.loginBrowser(who);
      await this.loginCli(who);
    }
    for (const who of NAMES) {
      // A token of each person that the node has revoked.
      const leaving = await loginAs(this.url, this.fake, who);
      const res = await fetch(`${this.url}/sky/logout`, { method: 'POST', headers: leaving.bearer });
      if (res.status !== 204) throw new Error(`logout of ${who} answered ${res.status}`);
      this.dead[who].push(leaving.token);
      const [h, p, s] = this.people[who].browser.token.split('.') as [string, string, string];
      const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      // Made admin under the original signature; the changed jti makes it differ even for alice.
      const claims = claimsOf(`.${p}`);
      const admin = Buffer.from(
        JSON.stringify({
          ...claims,
          is_admin: true,
          teams: { main: ['owner'] },
          jti: `${String(claims['jti'])}x`,
        }),
      );
      this.forged[who].push(`${none}.${p}.`, `${h}.${admin.toString('base64url')}.${s}`);
      // A code spent by a redemption with the wrong verifier: its own verifier must not revive it.
      const code = await this.mintCode(who);
      const wrong = await tokenRequest(this.url, {
        grant_type: 'authorization_code',
        code: code.code,
        code_verifier: newVerifier(),
      });
      if (wrong.status !== 400 || wrong.body['error'] !== 'invalid_grant') {
        throw new Error(
          `a code with the wrong verifier answered ${wrong.status} ${JSON.stringify(wrong.body)}`,
        );
      }
      this.spentCodes.push(code);
    }
  }

  /**
   * A live authorization code of `who`, through the real flow of a browser that is logged in: the fly
   * page of a sky CLI login (GET /sky/login with the CLI's challenge), then the click (POST /sky/fly).
   */
  async mintCode(who: Name): Promise<MintedCode> {
    const verifier = newVerifier();
    const query = new URLSearchParams({
      fly_port: '65000',
      code_challenge: challengeOf(verifier),
      code_challenge_method: 'S256',
      nonce: newNonce(),
    });
    const browser = new Browser();
    browser.jar.set('skymarshal_auth', encodeURIComponent(`bearer ${this.people[who].browser.token}`));
    const page = await followFlyLogin(`${this.url}/sky/login?${query.toString()}`, this.fake, who, browser);
    const delivery = await approveFly(page);
    if (delivery.kind !== 'code') throw new Error(`the CLI login of ${who} delivered a ${delivery.kind}`);
    return { who, code: delivery.value, verifier };
  }

  async loginBrowser(who: Name): Promise<void> {
    const got = await loginAs(this.url, this.fake, who);
    const claims = claimsOf(got.token);
    const previous = this.people[who] as Person | undefined;
    this.people[who] = {
      sub: String(claims['sub']),
      displayName: String(claims['name']),
      browser: { token: got.token, csrf: got.csrf, session: got.browser.jar.get('sky_session') ?? '' },
      cli: previous?.cli ?? { token: got.token, csrf: got.csrf, refresh: '' },
    };
  }

  async loginCli(who: Name): Promise<void> {
    const got = await cliLoginAs(this.url, this.fake, who);
    this.people[who].cli = {
      token: got.token,
      csrf: String(claimsOf(got.token)['csrf']),
      refresh: got.refreshToken,
    };
  }

  /** builders as BUILDERS, written through the API as the admin, so this node's cache knows at once. */
  async restoreBuilders(): Promise<void> {
    const res = await fetch(`${this.url}/api/v1/teams/builders`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.people.alice.cli.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ auth: BUILDERS }),
    });
    if (res.status !== 200 && res.status !== 201)
      throw new Error(`could not restore builders: ${res.status}`);
  }

  /** Whether the node refuses a token now (revoked), so only tokens it really refuses count as dead. */
  async refuses(token: string): Promise<boolean> {
    const res = await fetch(`${this.url}/api/v1/user`, { headers: { authorization: `Bearer ${token}` } });
    return res.status === 401;
  }

  /** The node still answers: the health check after every property. */
  async healthy(): Promise<boolean> {
    const res = await fetch(`${this.url}/sky/issuer/keys`).catch(() => null);
    if (!res || res.status !== 200) return false;
    const body = (await res.json()) as { keys?: unknown[] };
    return Array.isArray(body.keys) && body.keys.length > 0;
  }
}
