import { randomBytes, sign, verify } from 'node:crypto';
import type { Identity } from '../connector';
import { SkyError } from '../errors';
import type { SigningKey } from './keys';

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
}

export interface IssueInput {
  issuer: string;
  audience: string;
  durationMs: number;
  identity: Identity;
  teams: Record<string, string[]>;
  isAdmin: boolean;
  now?: number;
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

export function issueToken(key: SigningKey, input: IssueInput): { token: string; claims: SkyClaims } {
  const iat = Math.floor((input.now ?? Date.now()) / 1000);
  const { identity } = input;
  const claims: SkyClaims = {
    iss: input.issuer,
    aud: input.audience,
    sub: `${identity.connector}:${identity.userId}`,
    iat,
    exp: iat + Math.floor(input.durationMs / 1000),
    jti: randomBytes(16).toString('base64url'),
    user_id: identity.userId,
    account_id: identity.accountId,
    user_name: identity.userName ?? '',
    name: identity.name,
    email: identity.email ?? '',
    connector: identity.connector,
    groups: identity.groups,
    teams: input.teams,
    is_admin: input.isAdmin,
    csrf: randomBytes(32).toString('base64url'),
  };
  const signingInput = `${b64({ alg: 'RS256', typ: 'JWT', kid: key.kid })}.${b64(claims)}`;
  const signature = sign('RSA-SHA256', Buffer.from(signingInput), key.privateKey).toString('base64url');
  return { token: `${signingInput}.${signature}`, claims };
}

export interface VerifierOptions {
  keys: readonly SigningKey[];
  issuer: string;
  audience: string;
  leewaySeconds?: number;
  cacheSize?: number;
}

const MAX_TOKEN_BYTES = 16 * 1024;
const SEGMENT = /^[A-Za-z0-9_-]+$/;

class Refused extends Error {}

function decodeSegment(segment: string): Record<string, unknown> {
  if (!SEGMENT.test(segment)) throw new Refused('segment is not base64url');
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw new Refused('segment is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Refused('segment is not an object');
  return value as Record<string, unknown>;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

function checkShape(p: Record<string, unknown>): SkyClaims {
  const strings = ['iss', 'sub', 'jti', 'csrf', 'user_id', 'account_id', 'user_name', 'name', 'email', 'connector'];
  for (const name of strings) if (!isString(p[name])) throw new Refused(`claim ${name} missing or not a string`);
  for (const name of ['sub', 'jti', 'csrf', 'user_id']) if (p[name] === '') throw new Refused(`claim ${name} is empty`);
  if (typeof p['iat'] !== 'number' || typeof p['exp'] !== 'number') throw new Refused('iat/exp missing');
  if (!isStringArray(p['groups'])) throw new Refused('claim groups is not a list of strings');
  const teams = p['teams'];
  if (typeof teams !== 'object' || teams === null || Array.isArray(teams)) throw new Refused('claim teams is not an object');
  for (const roles of Object.values(teams)) if (!isStringArray(roles)) throw new Refused('claim teams has a bad role list');
  if (typeof p['is_admin'] !== 'boolean') throw new Refused('claim is_admin is not a boolean');
  return p as unknown as SkyClaims;
}

/**
 * Verifies sky tokens (SPEC §7.3): alg pinned to RS256, key chosen by kid only, then iss/aud/exp with
 * leeway. A bounded cache makes a repeated token one Map lookup (expiry is still checked on a hit).
 */
export class TokenVerifier {
  private readonly keys: Map<string, SigningKey>;
  private readonly leeway: number;
  private readonly cacheSize: number;
  private readonly cache = new Map<string, SkyClaims>();

  constructor(private readonly options: VerifierOptions) {
    this.keys = new Map(options.keys.map((k) => [k.kid, k]));
    this.leeway = options.leewaySeconds ?? 60;
    this.cacheSize = options.cacheSize ?? 10_000;
  }

  verify(token: string, nowMs = Date.now()): SkyClaims {
    try {
      const now = Math.floor(nowMs / 1000);
      const cached = this.cache.get(token);
      if (cached) {
        if (cached.exp + this.leeway <= now) throw new Refused('token expired');
        return cached;
      }
      const claims = this.verifyUncached(token, now);
      if (this.cache.size >= this.cacheSize) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
      this.cache.set(token, claims);
      return claims;
    } catch (err) {
      if (err instanceof Refused) {
        throw new SkyError('not_authorized', 'not authorized', { cause: new Error(err.message) });
      }
      throw err;
    }
  }

  private verifyUncached(token: string, now: number): SkyClaims {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_BYTES) throw new Refused('token missing or too large');
    const parts = token.split('.');
    if (parts.length !== 3) throw new Refused('token does not have three segments');
    const [h, p, s] = parts as [string, string, string];
    const header = decodeSegment(h);
    if (header['alg'] !== 'RS256') throw new Refused(`alg ${String(header['alg'])} is not RS256`);
    const kid = header['kid'];
    const key = typeof kid === 'string' ? this.keys.get(kid) : undefined;
    if (!key) throw new Refused('unknown kid');
    if (!SEGMENT.test(s)) throw new Refused('signature is not base64url');
    if (!verify('RSA-SHA256', Buffer.from(`${h}.${p}`), key.publicKey, Buffer.from(s, 'base64url'))) {
      throw new Refused('bad signature');
    }
    const claims = checkShape(decodeSegment(p));
    if (claims.iss !== this.options.issuer) throw new Refused('wrong iss');
    const aud: unknown = claims.aud;
    const audOk = aud === this.options.audience || (Array.isArray(aud) && aud.includes(this.options.audience));
    if (!audOk) throw new Refused('wrong aud');
    if (claims.exp + this.leeway <= now) throw new Refused('token expired');
    if (claims.iat > now + this.leeway) throw new Refused('token issued in the future');
    const nbf = (claims as unknown as Record<string, unknown>)['nbf'];
    if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + this.leeway)) throw new Refused('token not yet valid');
    return claims;
  }
}
