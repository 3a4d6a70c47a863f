/**
 * sky's tokens against a second, independent JOSE implementation (jose, panva): what sky signs through
 * jsonwebtoken, jose verifies from the JWKS sky publishes; what jose signs with sky's key, sky accepts;
 * and a tampered token is refused by both.
 */
import fc from 'fast-check';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import type { Identity } from '../../lib/connector';
import { generateSigningKey, issueToken, jwks, TokenVerifier, type SkyClaims } from '../../lib/tokens';

const key = generateSigningKey();
const other = generateSigningKey();
const issuer = 'https://ci.example.com';
const identity: Identity = {
  connector: 'bitbucket-cloud',
  userId: '{a1b2c3d4-0000-4000-8000-000000000001}',
  accountId: '557058:alice',
  userName: 'alice',
  name: 'Alice Liddell — ünïcode',
  email: 'alice@example.com',
  groups: ['acme', 'acme/devs', 'acme:owner'],
};
const base = {
  issuer,
  audience: 'sky',
  durationMs: 3600_000,
  identity,
  teams: { main: ['owner'], 'other-team': ['viewer', 'member'] },
  isAdmin: false,
  familyId: 'family-1',
};
const published = createLocalJWKSet(jwks([key]));
const verifier = new TokenVerifier({ keys: [key], issuer, audience: 'sky' });

/** jose's verdict on a token: its claims, or the code of its refusal. */
async function jose(token: string, nowMs = Date.now()): Promise<{ claims?: unknown; refused?: string }> {
  try {
    const { payload } = await jwtVerify(token, published, {
      algorithms: ['RS256'],
      issuer,
      audience: 'sky',
      typ: 'JWT',
      clockTolerance: 60,
      currentDate: new Date(nowMs),
    });
    return { claims: payload };
  } catch (err) {
    return { refused: (err as { code?: string }).code ?? String(err) };
  }
}

/** sky's verdict on a token: its claims, or the reason of its 401. */
function sky(token: string, nowMs = Date.now(), by = verifier): { claims?: SkyClaims; refused?: string } {
  try {
    return { claims: by.verify(token, nowMs) };
  } catch (err) {
    expect(err).toMatchObject({ code: 'not_authorized', status: 401 });
    return { refused: String((err as { cause?: Error }).cause?.message) };
  }
}

/** A token jose signs with a sky key, over sky's claims. */
const signedByJose = (
  claims: SkyClaims & { nbf?: number },
  signer = key,
  header: Record<string, unknown> = {},
): Promise<string> =>
  new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: signer.kid, ...header })
    .sign(signer.privateKey);

const flip = (text: string, i: number): string =>
  `${text.slice(0, i)}${text[i] === 'A' ? 'B' : 'A'}${text.slice(i + 1)}`;

test('the kid sky publishes is the RFC 7638 thumbprint jose computes from the JWKS entry', async () => {
  const [entry] = jwks([key]).keys;
  if (!entry) throw new Error('the JWKS publishes no key');
  expect(await calculateJwkThumbprint({ ...entry }, 'sha256')).toBe(key.kid);
});

test("jose verifies sky's tokens from the published JWKS, with the same claims and header", async () => {
  const { token, claims } = issueToken(key, base);
  expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', typ: 'JWT', kid: key.kid });
  expect(await jose(token)).toEqual({ claims });
  expect(sky(token)).toEqual({ claims });
});

test('a token of thousands of groups verifies in both', async () => {
  const groups = Array.from({ length: 1500 }, (_, i) => `workspace-${i}/group-${i}`);
  const { token, claims } = issueToken(key, { ...base, identity: { ...identity, groups } });
  expect(token.length).toBeGreaterThan(40_000);
  expect(await jose(token)).toEqual({ claims });
  expect(sky(token)).toEqual({ claims });
});

test("sky accepts jose's tokens signed with sky's key, with the same claims", async () => {
  const { claims } = issueToken(key, base);
  const token = await signedByJose(claims);
  expect(sky(token)).toEqual({ claims });
  expect(await jose(token)).toEqual({ claims });
});

describe('tampered tokens are refused by both', () => {
  const { token, claims } = issueToken(key, base);
  const [h, p, s] = token.split('.') as [string, string, string];
  const reencoded = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const cases: [string, () => Promise<string>][] = [
    ['a claim changed, signature kept', async () => `${h}.${reencoded({ ...claims, is_admin: true })}.${s}`],
    [
      'the teams changed, signature kept',
      async () => `${h}.${reencoded({ ...claims, teams: { main: ['owner'] } })}.${s}`,
    ],
    ['the signature flipped', async () => `${h}.${p}.${flip(s, 100)}`],
    [
      'the header re-encoded with its members reordered, signature kept',
      async () => `${reencoded({ kid: key.kid, typ: 'JWT', alg: 'RS256' })}.${p}.${s}`,
    ],
    [
      "jose's token, a claim changed",
      async () => {
        const [jh, , js] = (await signedByJose(claims)).split('.') as [string, string, string];
        return `${jh}.${reencoded({ ...claims, sub: 'bitbucket-cloud:{someone-else}' })}.${js}`;
      },
    ],
    [
      "jose's token signed by another key under sky's kid",
      async () => signedByJose(claims, other, { kid: key.kid }),
    ],
    [
      "jose's token signed by another key, with that key embedded as jwk",
      async () => signedByJose(claims, other, { kid: key.kid, jwk: other.publicJwk }),
    ],
    [
      "jose's token signed by another key, with a jku to fetch it from",
      async () => signedByJose(claims, other, { kid: key.kid, jku: 'http://127.0.0.1:1/keys' }),
    ],
  ];
  test.each(cases)('%s', async (_name, make) => {
    const bad = await make();
    expect(sky(bad).refused).toBe('bad signature');
    expect((await jose(bad)).refused).toBe('ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  });

  test('a token of a key sky does not hold: sky names the kid, jose finds no key', async () => {
    const bad = await signedByJose(claims, other);
    expect(sky(bad).refused).toBe('unknown kid');
    expect((await jose(bad)).refused).toBe('ERR_JWKS_NO_MATCHING_KEY');
  });
});

test("the algorithm is pinned: a valid PS256 signature by sky's own key is refused by both", async () => {
  const { claims } = issueToken(key, base);
  const pss = await signedByJose(claims, key, { alg: 'PS256' });
  const jwk = createLocalJWKSet({ keys: [{ ...key.publicJwk, alg: 'PS256' }] });
  // The signature itself is good: jose accepts it where PS256 is allowed.
  expect((await jwtVerify(pss, jwk, { algorithms: ['PS256'], issuer, audience: 'sky' })).payload).toEqual(
    claims,
  );
  expect(sky(pss).refused).toBe('alg is not RS256');
  expect((await jose(pss)).refused).toBe('ERR_JOSE_ALG_NOT_ALLOWED');
});

test('property: sky and jose agree on exp and nbf with the 60 s leeway, second by second', async () => {
  const { claims } = issueToken(key, base);
  const uncached = new TokenVerifier({ keys: [key], issuer, audience: 'sky', cacheSize: 0 });
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: -200, max: 200 }),
      fc.option(fc.integer({ min: -200, max: 200 }), { nil: undefined }),
      fc.integer({ min: -200, max: 200 }),
      async (expOffset, nbfOffset, nowOffset) => {
        const iat = claims.iat - 3600;
        const timed = { ...claims, iat, exp: claims.iat + expOffset };
        const token = await signedByJose(
          nbfOffset === undefined ? timed : { ...timed, nbf: claims.iat + nbfOffset },
        );
        const nowMs = (claims.iat + nowOffset) * 1000;
        const bySky = sky(token, nowMs, uncached).claims !== undefined;
        const byJose = (await jose(token, nowMs)).claims !== undefined;
        expect(bySky).toBe(byJose);
      },
    ),
    { numRuns: 300 },
  );
});
