/**
 * Automation tokens (README "Automation tokens"): opaque secrets of one team and one role, for CI
 * scripts and bots. The secret is `sky_at_` + 40 random base62 characters + a 6-character checksum of
 * them (so secret scanners recognise a leaked one, and a mistyped one is refused without a lookup); the
 * store keeps only its HMAC. Every node caches the records it has looked up and drops one when any
 * node creates or removes it (an `automation-token` event), so a revocation reaches every node within
 * the pub/sub delay; a revocation is also an ended family in the revocation list (`at:<id>`), which
 * every node holds in memory and heals after a Redis restart, so a lost deletion cannot bring it back.
 */
import { createHash, createHmac, randomInt } from 'node:crypto';
import { BoundedMap } from '../bounded-map';
import type { Clock } from '../clock';
import { parseGoDuration } from '../config/duration';
import { SkyError } from '../errors';
import type { Logger } from '../log';
import type { AutomationTokenRecords, StoreEvent } from '../store';
import { isRole, type Role } from '../teams/auth';
import { deriveSecret, type SigningKey } from './keys';
import type { Revocations } from './revocations';

export const AUTOMATION_PREFIX = 'sky_at_';
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LENGTH = 40;
const CHECK_LENGTH = 6;
const SECRET = new RegExp(`^${AUTOMATION_PREFIX}[0-9A-Za-z]{${BODY_LENGTH + CHECK_LENGTH}}$`);
/** A name people and scripts type: like a team name, 1-64 characters. */
const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** How often last uses are written: one write for all tokens used meanwhile. */
export const FLUSH_EVERY_MS = 5_000;
/** How often expired tokens are removed from the store (each lookup checks the expiry itself). */
export const SWEEP_EVERY_MS = 60_000;
const DAY_MS = 86_400_000;
/** The most tokens one team may have. */
export const MAX_TOKENS_PER_TEAM = 100;

/** The checksum of a secret's body: the first 6 base62 digits of its SHA-256 (public: scanners check it). */
function checksum(body: string): string {
  const digest = createHash('sha256').update(body).digest();
  let out = '';
  for (let i = 0; i < CHECK_LENGTH; i++) out += BASE62[(digest[i] as number) % 62];
  return out;
}

/** A new secret (238 bits of randomness). */
export function mintSecret(): string {
  let body = '';
  for (let i = 0; i < BODY_LENGTH; i++) body += BASE62[randomInt(62)];
  return `${AUTOMATION_PREFIX}${body}${checksum(body)}`;
}

/** Whether a text is an automation token at all (its prefix): such a bearer is never a JWT. */
export const isAutomationSecret = (token: string): boolean => token.startsWith(AUTOMATION_PREFIX);

/** Its form and checksum, checked without any lookup. */
export function wellFormed(secret: string): boolean {
  if (!SECRET.test(secret)) return false;
  const body = secret.slice(AUTOMATION_PREFIX.length, AUTOMATION_PREFIX.length + BODY_LENGTH);
  return checksum(body) === secret.slice(AUTOMATION_PREFIX.length + BODY_LENGTH);
}

/** Who made a token: the person's subject and name. */
export interface Creator {
  sub: string;
  name: string;
}

/** A token as stored (never its secret). Times are epoch ms. */
export interface AutomationToken {
  id: string;
  team: string;
  name: string;
  role: Role;
  creator: Creator;
  created: number;
  expires: number;
}

/** What `GET …/tokens` shows of a token. */
export interface AutomationTokenView {
  name: string;
  role: Role;
  created_by: string;
  created_by_sub: string;
  created_at: string;
  expires_at: string;
  last_used_at: string | null;
}

function parseRecord(json: string): AutomationToken | null {
  try {
    const v = JSON.parse(json) as Partial<AutomationToken>;
    if (
      typeof v.id === 'string' &&
      typeof v.team === 'string' &&
      typeof v.name === 'string' &&
      isRole(v.role) &&
      typeof v.created === 'number' &&
      typeof v.expires === 'number' &&
      typeof v.creator?.sub === 'string' &&
      typeof v.creator.name === 'string'
    )
      return v as AutomationToken;
  } catch {
    // a malformed record is no token
  }
  return null;
}

/** The token's name as given, or the 400 that says what a name may be. */
export function validateTokenName(value: unknown): string {
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new SkyError(
      'invalid_request',
      `invalid token name '${String(value).slice(0, 70)}': 1-64 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return value;
}

/** `expires_in`: seconds (a number), or a duration text: days (`30d`) or Go's grammar (`720h`, `90m`). */
export function parseExpiresIn(value: unknown, maxMs: number): number {
  let ms = NaN;
  if (typeof value === 'number' && Number.isFinite(value)) ms = value * 1000;
  else if (typeof value === 'string') {
    const days = /^\s*(\d{1,5})d\s*$/.exec(value);
    const parsed = days ? null : parseGoDuration(value.trim());
    if (days) ms = Number(days[1]) * DAY_MS;
    else if (parsed && 'ns' in parsed) ms = Number(parsed.ns / 1_000_000n);
  }
  if (!(ms >= 60_000 && ms <= maxMs)) {
    throw new SkyError(
      'invalid_request',
      `invalid expires_in '${String(value).slice(0, 40)}': give seconds or a duration such as 30d or 720h, at least 1m and at most ${Math.floor(maxMs / DAY_MS)}d`,
    );
  }
  return Math.round(ms);
}

export interface AutomationTokensOptions {
  records: AutomationTokenRecords;
  revocations: Revocations;
  /** The signing key, then previous private keys: tokens hashed with an older key still open. */
  keys: readonly SigningKey[];
  clock: Clock;
  log: Logger;
  /** Told when a token expires (the audit trail), once across all nodes. */
  expired?: (token: AutomationToken) => void;
}

/** A lookup's answer: the record, or why not (for the log only; the caller answers one 401). */
export type Lookup = { token: AutomationToken } | { refused: string };

/** What a node keeps of a secret it was shown: its HMAC, its record, the record's revocation-list id. */
interface Cached {
  key: string;
  token: AutomationToken | null;
  family: string;
}

/** How many presented secrets a node remembers (well-formed ones only). */
const CACHED_TOKENS = 10_000;

export class AutomationTokens {
  private readonly hmacKeys: Buffer[];
  /**
   * Presented secret → its HMAC and its record (null: the store has none): a request with a known
   * secret costs one Map read, as a JWT's verified-token cache does (bench scenario 1, 1e beside 1a).
   * Only well-formed secrets with a good checksum get here; bounded, like every node-local cache.
   */
  private readonly cache = new BoundedMap<string, Cached>(CACHED_TOKENS);
  /** Last uses not yet written, by stored id. */
  private readonly uses = new Map<string, number>();
  private readonly timers: NodeJS.Timeout[];

  constructor(private readonly options: AutomationTokensOptions) {
    this.hmacKeys = options.keys.map((k) => deriveSecret(k, 'automation-token'));
    const every = (ms: number, work: () => Promise<void>): NodeJS.Timeout =>
      setInterval(() => void work().catch(() => undefined), ms).unref();
    this.timers = [every(FLUSH_EVERY_MS, () => this.flush()), every(SWEEP_EVERY_MS, () => this.sweep())];
  }

  private id(secret: string, key = this.hmacKeys[0] as Buffer): string {
    return createHmac('sha256', key).update(secret).digest('base64url');
  }

  /** Every node hears creations and removals; after missed events (resync) the whole cache goes. */
  handle(event: StoreEvent): void {
    if (event.type === 'automation-token') this.drop(event.id);
    else if (event.type === 'resync' || event.type === 'data-loss') this.cache.clear();
  }

  /** Forgets what this node cached of the token whose (stored or current-key) id is `id`. */
  private drop(id: string): void {
    for (const [secret, cached] of this.cache)
      if (cached.key === id || cached.token?.id === id) this.cache.delete(secret);
  }

  /**
   * The token a bearer secret stands for. A malformed secret or a bad checksum is refused at once,
   * without a lookup; a cached one is answered without waiting.
   */
  lookup(secret: string): Lookup | Promise<Lookup> {
    const cached = this.cache.get(secret);
    if (cached !== undefined) return this.judge(cached);
    if (!wellFormed(secret)) return { refused: 'automation token malformed or with a bad checksum' };
    return this.load(secret).then((loaded) => this.judge(loaded));
  }

  private async load(secret: string): Promise<Cached> {
    const key = this.id(secret);
    let json = await this.options.records.get(key);
    // A token made before a key rotation is stored under the previous key's HMAC.
    for (const older of this.hmacKeys.slice(1)) {
      if (json !== null) break;
      json = await this.options.records.get(this.id(secret, older));
    }
    const token = json === null ? null : parseRecord(json);
    const cached: Cached = token
      ? { key, token, family: familyOf(token.id) }
      : { key, token: null, family: '' };
    this.cache.set(secret, cached);
    return cached;
  }

  private judge({ token, family }: Cached): Lookup {
    if (!token) return { refused: 'unknown automation token' };
    if (this.options.revocations.isFamilyEnded(family)) return { refused: 'automation token revoked' };
    if (this.options.clock.now() >= token.expires) return { refused: 'automation token expired' };
    this.uses.set(token.id, this.options.clock.now());
    return { token };
  }

  /** Creates a token; the secret is in the answer only. 409 when the team has a token of that name. */
  async create(input: {
    team: string;
    name: string;
    role: Role;
    expiresInMs: number;
    creator: Creator;
  }): Promise<{ secret: string; token: AutomationToken }> {
    const existing = await this.options.records.list(input.team);
    if (existing.has(input.name)) throw duplicate(input.team, input.name);
    if (existing.size >= MAX_TOKENS_PER_TEAM) {
      throw new SkyError(
        'conflict',
        `team '${input.team}' has ${MAX_TOKENS_PER_TEAM} automation tokens already: revoke one first`,
      );
    }
    const secret = mintSecret();
    const now = this.options.clock.now();
    const token: AutomationToken = {
      id: this.id(secret),
      team: input.team,
      name: input.name,
      role: input.role,
      creator: input.creator,
      created: now,
      expires: now + input.expiresInMs,
    };
    if (!(await this.options.records.create(input.team, input.name, token.id, JSON.stringify(token))))
      throw duplicate(input.team, input.name);
    return { secret, token };
  }

  /** The team's tokens, oldest first, with their last use (this node's unwritten ones included). */
  async list(team: string): Promise<AutomationTokenView[]> {
    const tokens = [...(await this.options.records.list(team)).values()]
      .map(parseRecord)
      .filter((t): t is AutomationToken => t !== null)
      .sort((a, b) => a.created - b.created);
    const stored = await this.options.records.lastUsed(tokens.map((t) => t.id));
    return tokens.map((t, i) => {
      const used = Math.max(stored[i] ?? 0, this.uses.get(t.id) ?? 0);
      return {
        name: t.name,
        role: t.role,
        created_by: t.creator.name,
        created_by_sub: t.creator.sub,
        created_at: new Date(t.created).toISOString(),
        expires_at: new Date(t.expires).toISOString(),
        last_used_at: used > 0 ? new Date(used).toISOString() : null,
      };
    });
  }

  /** Revokes the team's token `name` on every node; resolves it, or null when there is none. */
  async revoke(team: string, name: string): Promise<AutomationToken | null> {
    const json = await this.options.records.remove(team, name);
    const token = json === null ? null : parseRecord(json);
    if (token) {
      this.forget(token);
      await this.options.revocations.revokeFamily(familyOf(token.id), token.expires);
    }
    return token;
  }

  /** Every token of a deleted team, revoked. */
  async revokeTeam(team: string): Promise<AutomationToken[]> {
    const names = [...(await this.options.records.list(team)).keys()];
    const revoked: AutomationToken[] = [];
    for (const name of names) {
      const token = await this.revoke(team, name);
      if (token) revoked.push(token);
    }
    return revoked;
  }

  private forget(token: AutomationToken): void {
    this.uses.delete(token.id);
    this.drop(token.id);
  }

  /** Writes the last uses seen since the last flush, in one write. */
  async flush(): Promise<void> {
    if (this.uses.size === 0) return;
    const uses = new Map(this.uses);
    this.uses.clear();
    await this.options.records.touch(uses);
  }

  /** Removes expired tokens: the node whose removal succeeds reports the expiry, so it is reported once. */
  async sweep(): Promise<void> {
    const now = this.options.clock.now();
    for (const team of await this.options.records.teams()) {
      for (const [name, json] of await this.options.records.list(team)) {
        const token = parseRecord(json);
        if (!token || token.expires > now) continue;
        if ((await this.options.records.remove(team, name)) !== null) this.options.expired?.(token);
      }
    }
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await this.flush().catch((err: unknown) =>
      this.options.log.warn({ err: (err as Error).message }, 'could not write automation token uses'),
    );
  }
}

/** The revocation-list family id of a token. */
const familyOf = (id: string): string => `at:${id}`;

const duplicate = (team: string, name: string): SkyError =>
  new SkyError('conflict', `team '${team}' has an automation token named '${name}' already`);
