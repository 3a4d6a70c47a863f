import { randomUUID } from 'node:crypto';
import type { Store as SessionStore } from 'express-session';
import type { ClockReading } from '../clock';
import type { StoreEventListener } from './events';

/** Principals (already prefixed and lower-cased) that a team config names: the keys of the login index. */
export interface Principals {
  users: string[];
  groups: string[];
}

export type WriteMode = 'upsert' | 'update';
export type WriteOutcome = 'created' | 'updated' | 'missing';

/**
 * Team configs as stored: opaque JSON per team plus the user/group → teams index (SPEC §6.3).
 * teams/ gives the JSON its meaning; this layer keeps config and index consistent atomically.
 */
export interface TeamRecords {
  get(team: string): Promise<string | null>;
  all(): Promise<Map<string, string>>;
  /** Teams naming any of these principals, with their configs: a bounded number of round trips. */
  findByPrincipals(principals: Principals): Promise<Map<string, string>>;
  /**
   * Writes the config and moves the index entries atomically. `update` never creates: it resolves
   * 'missing' when there is no such team (an owner must not re-create a team an admin just deleted).
   */
  put(team: string, json: string, principals: Principals, mode: WriteMode): Promise<WriteOutcome>;
  /** Removes the config and its index entries; resolves false when there was no such team. */
  delete(team: string): Promise<boolean>;
}

/** Every revocation, as loaded: id → the time (epoch ms) until which it must be kept, or the not-before. */
export interface RevocationSnapshot {
  tokens: [string, number][];
  /** Ended login families (the JWT's `sid`) → when the last token of the family stops verifying. */
  families: [string, number][];
  users: [string, number][];
}

/** Below these a revocation covers no token that could still verify, and the store drops it. */
export interface RevocationCutoffs {
  /** Epoch ms: families whose end is earlier. */
  families: number;
  /** Epoch ms: legacy token ids whose expiry is earlier. */
  tokens: number;
  /** Epoch seconds: users whose not-before is earlier. */
  users: number;
}

/** How many revocations of each kind the store holds (expired ones not yet dropped included). */
export interface RevocationCounts {
  tokens: number;
  families: number;
  users: number;
}

/**
 * Ended families and per-user "not before" times, kept until the tokens they cover expire; and the
 * revoked token ids that sky wrote before logins were families (still loaded and honoured).
 * Every write resolves only once it is as durable as the store makes it (a replica's WAIT).
 */
export interface RevocationRecords {
  /** Every token of the family is refused until `untilMs`, past which none of them could verify. */
  revokeFamily(familyId: string, untilMs: number): Promise<void>;
  /** Tokens of `sub` issued before `notBefore` (epoch seconds) are refused. Keeps the later time. */
  revokeUser(sub: string, notBefore: number): Promise<void>;
  /** Writes back a legacy revoked token id that the store lost (heal). */
  restoreToken(jti: string, expMs: number): Promise<void>;
  /** Drops what is below the cutoffs, then answers everything else. */
  load(cutoffs: RevocationCutoffs): Promise<RevocationSnapshot>;
  counts(): Promise<RevocationCounts>;
}

/**
 * Short-lived single-use values shared by every node: the CLI's authorization codes (≤ 60 s) and the
 * marks of spent login states. Ids are opaque here (callers hash what they store).
 */
export interface SingleUseRecords {
  /** Stores `value` for `ttlMs` unless the id exists already; resolves false then (it was used). */
  put(id: string, value: string, ttlMs: number): Promise<boolean>;
  /** The value, removed in the same step: a second take of the same id finds nothing. */
  take(id: string): Promise<string | null>;
}

/** What a presented refresh token is to its family. */
export type FamilyState = 'current' | 'reused' | 'unknown';

/**
 * Grants (SPEC §8): each user's sealed upstream tokens, refresh-token families (only hashes are kept),
 * the user's browser sessions, and a lease so one node at a time refreshes a user's upstream tokens.
 * Values are opaque here: tokens/ seals and hashes them.
 */
export interface GrantRecords {
  upstream(sub: string): Promise<string | null>;
  saveUpstream(sub: string, sealed: string, ttlSeconds: number): Promise<void>;
  createFamily(sub: string, familyId: string, tokenHash: string, ttlSeconds: number): Promise<void>;
  /**
   * The family's owner when `tokenHash` is its current token. A token the family already spent is
   * reuse: the family ends at once ('reused'). Anything else is 'unknown' and changes nothing.
   */
  inspect(familyId: string, tokenHash: string): Promise<{ state: FamilyState; sub?: string }>;
  /** Atomically: current → replaced by `nextHash` (durable, as revocations); anything else as inspect(). */
  rotate(familyId: string, tokenHash: string, nextHash: string): Promise<FamilyState>;
  endFamily(familyId: string): Promise<void>;
  /** Indexes a browser session of the user (pruned as its members expire). */
  rememberSession(sub: string, sessionId: string, ttlSeconds: number): Promise<void>;
  /** Drops one session from the user's index (its logout). */
  forgetSession(sub: string, sessionId: string): Promise<void>;
  /** Drops the user's upstream tokens and every family; resolves the session ids to destroy. */
  forgetUser(sub: string): Promise<string[]>;
  /** The user's groups as last read upstream; every node hears the new record (a `groups` event). */
  saveGroups(sub: string, record: { groups: string[]; readAt: number }, ttlSeconds: number): Promise<void>;
  groups(sub: string): Promise<{ groups: string[]; readAt: number } | null>;
  /** Takes the user's refresh lease for `ttlMs` when nobody holds it. */
  lock(sub: string, owner: string, ttlMs: number): Promise<boolean>;
  unlock(sub: string, owner: string): Promise<void>;
  /** Extends the lease while its holder still works; resolves false when it is no longer the holder's. */
  renew(sub: string, owner: string, ttlMs: number): Promise<boolean>;
}

/** Counters of requests per client and window, shared by every node (the login and token limits). */
export interface RateLimitRecords {
  /** Counts one request in `bucket`'s window (which starts at its first request); the count so far and the ms left. */
  hit(bucket: string, windowMs: number): Promise<{ count: number; resetMs: number }>;
  /** The count of `bucket`'s current window without counting (0 when none is open). */
  peek(bucket: string): Promise<{ count: number; resetMs: number }>;
}

/**
 * A team's automation tokens (README "Automation tokens"): records keyed by the HMAC of their secret
 * (`id`; the secret itself is never stored), with the team's name → id index. Values are opaque here.
 */
export interface AutomationTokenRecords {
  /** Stores a new token unless the team has one of that name (false then); every node hears it. */
  create(team: string, name: string, id: string, json: string): Promise<boolean>;
  /** The record of the token whose id is `id`, or null. */
  get(id: string): Promise<string | null>;
  /** The team's tokens: name → record (expired ones too, until removed). */
  list(team: string): Promise<Map<string, string>>;
  /** Removes the team's token `name`, durably; resolves its record (null: none). Every node hears it. */
  remove(team: string, name: string): Promise<string | null>;
  /** Teams that have tokens (the expiry sweep). */
  teams(): Promise<string[]>;
  /** Records last uses (id → epoch ms) in one write. */
  touch(uses: Map<string, number>): Promise<void>;
  /** The last use of each id (null: never, or not written yet). */
  lastUsed(ids: string[]): Promise<(number | null)[]>;
}

/** The audit trail (README "Audit trail"): events as opaque JSON, oldest first, bounded by length and age. */
export interface AuditRecords {
  /** Appends one event; trims to `maxEvents` and drops events older than `oldestMs`. Resolves its id. */
  append(json: string, maxEvents: number, oldestMs: number): Promise<string>;
  /**
   * Events newest first: those with an id before `before` (null: from the newest), not older than
   * `sinceMs`, at most `count`.
   */
  read(sinceMs: number, before: string | null, count: number): Promise<[id: string, json: string][]>;
}

/** What a store can lose that the nodes write back (SPEC §8). */
export const LOSS_KINDS = ['teams', 'revocations'] as const;
export type LossKind = (typeof LOSS_KINDS)[number];
export const isLossKind = (value: unknown): value is LossKind => LOSS_KINDS.some((k) => k === value);

/** The mark of the last loss of each kind a node reported, one per episode (absent: none on record). */
export type LossMarks = Partial<Record<LossKind, string>>;

/** A new loss mark: when, and a random id (two nodes reporting in the same millisecond differ). */
export const lossMark = (): string => `${new Date().toISOString()} ${randomUUID()}`;

/** What sky needs of its store (SPEC §8), as found on one start or reconnect. */
export interface StoreRequirements {
  /** Settings under which the store can lose sky's keys: each names the server, the setting and the fix. */
  problems: string[];
  /** What could not be checked (managed Redis often forbids CONFIG). */
  unchecked: string[];
  /** Replicas the masters reported (acknowledged writes wait for one when there are any). */
  replicas: number;
}

/** Everything sky keeps: Redis, or the in-memory embedded default (SPEC §2). */
export interface Store {
  readonly kind: 'redis' | 'memory';
  /** Resolves once this node hears every node's events; rejects when Redis cannot be reached. */
  readonly ready: Promise<void>;
  /** Subscribes again when the first attempt (`ready`) failed; resolves at once when subscribed. */
  start(): Promise<void>;
  readonly teams: TeamRecords;
  readonly revocations: RevocationRecords;
  readonly grants: GrantRecords;
  readonly rateLimits: RateLimitRecords;
  readonly singleUse: SingleUseRecords;
  readonly automationTokens: AutomationTokenRecords;
  readonly audit: AuditRecords;
  readonly sessions: SessionStore;
  /** Checks persistence and eviction policy (and counts replicas); the embedded store has nothing to check. */
  requirements(): Promise<StoreRequirements>;
  /** One reading of the store's clock (Redis TIME); null for the embedded store (its clock is ours). */
  clockReading(): Promise<ClockReading> | null;
  /**
   * Records that Redis lost data of this kind (a new mark, kept in Redis) and tells every node, this one
   * included (a `data-loss` event); resolves to the mark. A node whose subscription was reconnecting
   * misses the event and finds the mark instead (`lossMarks`), so a loss healed by another node before
   * this node could see it is still reported on every node.
   */
  reportLoss(kind: LossKind): Promise<string>;
  /** The marks of the last losses reported (what `reportLoss` wrote). */
  lossMarks(): Promise<LossMarks>;
  /** Hear every node's changes (including this node's own). Returns an unsubscribe function. */
  subscribe(listener: StoreEventListener): () => void;
  close(): Promise<void>;
}
