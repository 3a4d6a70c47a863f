import { randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { BoundedMap } from '../bounded-map';
import type { Identity } from '../connector';
import { SkyError } from '../errors';
import type { SigningKey, VerifyingKey } from './keys';

/** The claims of a sky token (SPEC §7.1); `account_id` is added so guards can match every user entry form. */
export interface SkyClaims {
  iss: string;
  aud: string;
  sub: string;
  iat: number;
  exp: number;
  jti: string;
  user_id: string;
  account_id: string;
  user_name: string;
  name: string;
  email: string;
  connector: string;
  groups: string[];
  teams: Record<string, string[]>;
  is_admin: boolean;
  csrf: string;
  /** The login family this token belongs to: logout, refresh-token reuse and upstream revocation end it. */
  sid: string;
}

export interface IssueInput {
  issuer: string;
  audience: string;
  durationMs: number;
  identity: Identity;
  teams: Record<string, string[]>;
  isAdmin: boolean;
  /** The login family (refresh family) of the login or refresh that issues this token. */
  familyId: string;
  /** Epoch milliseconds; default Date.now(). */
  now?: number;
}

/** The stable subject of a person (SPEC §7.1): connector + upstream id. */
export function subjectOf(identity: Pick<Identity, 'connector' | 'userId'>): string {
  return `${identity.connector}:${identity.userId}`;
}

/** A signed RS256 token (SPEC §7.1) and its claims; `csrf` is fresh per token and goes to skymarshal_csrf. */
export function issueToken(key: SigningKey, input: IssueInput): { token: string; claims: SkyClaims } {
  const iat = Math.floor((input.now ?? Date.now()) / 1000);
  const { identity } = input;
  const claims: SkyClaims = {
    iss: input.issuer,
    aud: input.audience,
    sub: subjectOf(identity),
    iat,
    exp: iat + Math.floor(input.durationMs / 1000),
    jti: randomBytes(16).toString('base64url'),
    user_id: identity.userId,
    account_id: identity.accountId,
    user_name: identity.userName ?? '',
    name: identity.name,
    email: identity.email ?? '',
    connector: identity.connector,
    groups: [...identity.groups],
    teams: Object.fromEntries(Object.entries(input.teams).map(([team, roles]) => [team, [...roles]])),
    is_admin: input.isAdmin,
    csrf: randomBytes(32).toString('base64url'),
    sid: input.familyId,
  };
  // Header {alg, typ: 'JWT', kid}; the payload is signed as given (iat and exp are already in it).
  const token = jwt.sign(claims, key.privateKey, { algorithm: 'RS256', keyid: key.kid });
  return { token, claims };
}

export interface VerifierOptions {
  keys: readonly VerifyingKey[];
  issuer: string;
  audience: string;
  /** Clock skew allowed on exp/iat/nbf; default 60. */
  leewaySeconds?: number;
  /** Verified tokens remembered; default 10000. */
  cacheSize?: number;
  /** The clock the nodes agree on (epoch ms; default Date.now). */
  now?: () => number;
}

/**
 * Checked before anything else. As large as the 30 cookie chunks of cookies.ts can carry, so a user with
 * thousands of groups (SPEC §7.2) is not locked out; decoding 120 KB costs far less than the RSA check.
 */
const MAX_TOKEN_LENGTH = 120 * 1024;
/** Bigger (rare) tokens are verified every time, so the cache holds at most cacheSize × this. */
const MAX_CACHED_TOKEN_LENGTH = 8 * 1024;
const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** 43 base64url characters: 258 bits of an RS256 signature, so two cached tokens never share a key by chance. */
const CACHE_KEY_LENGTH = 43;

/** A reason to refuse a token; it becomes the cause of the one 401, for logs only. */
class Refused extends Error {}

/**
 * Strict base64url: the alphabet, no padding, and the canonical form (no spare bits, no stray length).
 * Only that form survives the round trip, so the alphabet is tested only to name a failure: a regex over a
 * big token's payload costs more than decoding it.
 */
function decodeBase64url(segment: string, what: string): Buffer {
  const bytes = Buffer.from(segment, 'base64url');
  if (segment.length === 0 || bytes.toString('base64url') !== segment) {
    throw new Refused(
      SEGMENT.test(segment) ? `${what} is not canonical base64url` : `${what} is not base64url`,
    );
  }
  return bytes;
}

function decodeObject(segment: string, what: string): Record<string, unknown> {
  const text = decodeBase64url(segment, what).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Refused(`${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Refused(`${what} is not an object`);
  }
  return value as Record<string, unknown>;
}

/** Own properties only, so nothing is ever read through a prototype (a payload may carry "__proto__"). */
const own = (o: Record<string, unknown>, name: string): unknown =>
  Object.hasOwn(o, name) ? o[name] : undefined;
const isString = (v: unknown): v is string => typeof v === 'string';
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isRoleLists = (v: object): v is Record<string, string[]> => Object.values(v).every(isStringArray);

/** A claim that must be a string (and, when `nonEmpty`, not ''). */
function text(p: Record<string, unknown>, name: string, nonEmpty = false): string {
  const value = own(p, name);
  if (!isString(value)) throw new Refused(`claim ${name} missing or not a string`);
  if (nonEmpty && value === '') throw new Refused(`claim ${name} is empty`);
  return value;
}

function time(p: Record<string, unknown>, name: 'iat' | 'exp'): number {
  const value = own(p, name);
  if (!isTime(value)) throw new Refused('claim iat or exp missing or not a number');
  return value;
}

/**
 * The claims sky reads, each checked and copied into a fresh object (nothing else of the payload is
 * kept). `aud` is left to jsonwebtoken, which checks it against this node's audience.
 */
function checkShape(p: Record<string, unknown>): Omit<SkyClaims, 'aud'> {
  const claims = {
    iss: text(p, 'iss'),
    sub: text(p, 'sub', true),
    jti: text(p, 'jti', true),
    csrf: text(p, 'csrf', true),
    user_id: text(p, 'user_id', true),
    account_id: text(p, 'account_id'),
    user_name: text(p, 'user_name'),
    name: text(p, 'name'),
    email: text(p, 'email'),
    connector: text(p, 'connector'),
    sid: text(p, 'sid', true),
    iat: time(p, 'iat'),
    exp: time(p, 'exp'),
  };
  const groups = own(p, 'groups');
  if (!isStringArray(groups)) throw new Refused('claim groups is not a list of strings');
  const teams = own(p, 'teams');
  if (typeof teams !== 'object' || teams === null || Array.isArray(teams)) {
    throw new Refused('claim teams is not an object');
  }
  // Kept as parsed, not copied: a copy would turn an own "__proto__" team into the object's prototype.
  if (!isRoleLists(teams)) throw new Refused('claim teams has a bad role list');
  const isAdmin = own(p, 'is_admin');
  if (typeof isAdmin !== 'boolean') throw new Refused('claim is_admin is not a boolean');
  if (Object.hasOwn(p, 'nbf') && !isTime(own(p, 'nbf'))) throw new Refused('claim nbf is not a number');
  return { ...claims, groups, teams, is_admin: isAdmin };
}

/** Cached claims are shared by every request presenting the token, so nobody may change them. */
function deepFreeze(claims: SkyClaims): SkyClaims {
  Object.freeze(claims.groups);
  for (const roles of Object.values(claims.teams)) Object.freeze(roles);
  Object.freeze(claims.teams);
  return Object.freeze(claims);
}

/**
 * jsonwebtoken's refusals in sky's words. Its other errors cannot happen after sky's own checks; should one
 * occur, its message names it (jsonwebtoken's messages never quote the token).
 */
const JWT_REFUSALS: readonly (readonly [prefix: string, reason: string])[] = [
  ['invalid signature', 'bad signature'],
  ['jwt audience invalid', 'wrong aud'],
  ['jwt issuer invalid', 'wrong iss'],
];

function refusalOf(err: unknown): Refused {
  if (err instanceof jwt.TokenExpiredError) return new Refused('token expired');
  if (err instanceof jwt.NotBeforeError) return new Refused('token not yet valid');
  if (err instanceof jwt.JsonWebTokenError) {
    const known = JWT_REFUSALS.find(([prefix]) => err.message.startsWith(prefix));
    return new Refused(known ? known[1] : `jsonwebtoken: ${err.message}`);
  }
  // Not one of its own errors (a parser's, say): its message may quote the token, so only its name.
  return new Refused(`jsonwebtoken failed (${err instanceof Error ? err.name : typeof err})`);
}

/**
 * Verifies sky tokens (SPEC §7.3). sky's strict checks come first (segments, canonical base64url, header,
 * alg, crit, the key by kid from sky's own keys, claim shapes), then jsonwebtoken checks the signature with
 * alg pinned to RS256, iss, aud, exp and nbf with the leeway; sky adds iat. A bounded cache makes a repeated
 * token one Map lookup (expiry is still checked on a hit).
 */
export class TokenVerifier {
  private readonly keys: Map<string, VerifyingKey>;
  private readonly leeway: number;
  /**
   * Keyed by the token's last characters (its signature's end): hashing a whole ~1 KB token that every
   * request allocates anew costs more than the rest of the lookup. A hit still compares the whole token.
   */
  private readonly cache: BoundedMap<string, { token: string; claims: SkyClaims }>;

  private readonly jwtOptions: jwt.VerifyOptions & { complete?: false };

  constructor(private readonly options: VerifierOptions) {
    // jsonwebtoken skips an issuer or audience check whose expected value is empty.
    for (const name of ['issuer', 'audience'] as const) {
      if (!options[name]) throw new SkyError('invalid_config', `token verifier: ${name} must not be empty`);
    }
    this.keys = new Map(options.keys.map((k) => [k.kid, k]));
    this.leeway = options.leewaySeconds ?? 60;
    this.cache = new BoundedMap(options.cacheSize ?? 10_000);
    this.jwtOptions = {
      algorithms: ['RS256'],
      issuer: options.issuer,
      audience: options.audience,
      clockTolerance: this.leeway,
    };
  }

  /** The claims of a good token; anything else throws SkyError not_authorized (the reason is its cause). */
  verify(token: string, nowMs = this.options.now ? this.options.now() : Date.now()): SkyClaims {
    try {
      if (typeof token !== 'string' || token.length === 0) throw new Refused('no token');
      if (token.length > MAX_TOKEN_LENGTH) {
        throw new Refused(`token longer than ${MAX_TOKEN_LENGTH} characters`);
      }
      const now = Math.floor(nowMs / 1000);
      const cached = this.cache.get(token.slice(-CACHE_KEY_LENGTH));
      if (cached && cached.token === token) {
        this.checkExpiry(cached.claims, now);
        return cached.claims;
      }
      const claims = deepFreeze(this.verifyUncached(token, now));
      if (token.length <= MAX_CACHED_TOKEN_LENGTH) this.remember(token, claims, now);
      return claims;
    } catch (err) {
      if (err instanceof Refused) {
        throw new SkyError('not_authorized', 'not authorized', { cause: new Error(err.message) });
      }
      throw err;
    }
  }

  /**
   * Oldest first out (BoundedMap). A hit is not moved: that would cost every request two more Map
   * writes, and a token evicted while in use is merely verified once more. Expired tokens at the old
   * end go too, so a quiet node does not keep a full cache of dead tokens (insertion order is roughly
   * expiry order: a few steps per insert keep it clean).
   */
  private remember(token: string, claims: SkyClaims, now: number): void {
    for (let i = 0; i < 2; i++) {
      const oldest = this.cache.oldest();
      if (!oldest || oldest[1].claims.exp + this.leeway > now) break;
      this.cache.dropOldest();
    }
    this.cache.set(token.slice(-CACHE_KEY_LENGTH), { token, claims });
  }

  private checkExpiry(claims: SkyClaims, now: number): void {
    if (claims.exp + this.leeway <= now) throw new Refused('token expired');
  }

  private verifyUncached(token: string, now: number): SkyClaims {
    const parts = token.split('.');
    if (parts.length !== 3) throw new Refused(`token has ${parts.length} segments, not 3`);
    const [h, p, s] = parts as [string, string, string];
    const header = decodeObject(h, 'header');
    const alg = own(header, 'alg');
    if (alg !== 'RS256') throw new Refused('alg is not RS256');
    // No extension of RFC 7515 is understood here (nor by jsonwebtoken), so a critical one must fail the token.
    if (Object.hasOwn(header, 'crit')) throw new Refused('header has crit');
    const kid = own(header, 'kid');
    if (!isString(kid)) throw new Refused('header has no kid');
    // The key is sky's own, by kid: a jwk, jku or x5u header is never read.
    const key = this.keys.get(kid);
    if (!key) throw new Refused('unknown kid');
    // jws decodes the signature leniently (spare bits, a stray character), so sky checks its form first.
    decodeBase64url(s, 'signature');
    const payload = decodeObject(p, 'payload');
    const claims = checkShape(payload);
    try {
      jwt.verify(token, key.publicKey, { ...this.jwtOptions, clockTimestamp: now });
    } catch (err) {
      throw refusalOf(err);
    }
    // jsonwebtoken checks iat only against a maxAge; a token from the future is refused here.
    if (claims.iat > now + this.leeway) throw new Refused('token issued in the future');
    // The claims are the ones shape-checked above, decoded from the same signed bytes jsonwebtoken verified.
    // An audience list is accepted, but callers always see the one audience this node serves.
    return { ...claims, aud: this.options.audience };
  }
}
