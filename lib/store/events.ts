import { isLossKind, type LossKind } from './records';

/** What one node tells every node (Redis pub/sub, or an in-process emitter for the embedded default). */
export type StoreEvent =
  /** A team was written (`config`: its JSON) or deleted (`config`: null); older nodes sent no config. */
  | { type: 'team'; team: string; config?: string | null }
  | { type: 'revoke-token'; jti: string; exp: number }
  | { type: 'revoke-family'; sid: string; until: number }
  | { type: 'revoke-user'; sub: string; notBefore: number }
  /** An automation token was created or removed (revoked, expired, its team deleted): caches drop it. */
  | { type: 'automation-token'; id: string }
  /** A user's groups were read upstream again (SKY_GROUPS_MAX_AGE). */
  | { type: 'groups'; sub: string; groups: string[]; readAt: number }
  /** A node found Redis missing data it knew and wrote back what it could (every node reports it). */
  | { type: 'data-loss'; kind: LossKind }
  /** The subscription is lost: from now on other nodes' changes may be missed. */
  | { type: 'lost' }
  /** The subscription was lost and is back: events may have been missed, so caches must be rebuilt. */
  | { type: 'resync' };

export type StoreEventListener = (event: StoreEvent) => void;

/** Parses a message from the channel; anything malformed is dropped (another node's bug must not crash us). */
export function parseStoreEvent(message: string): StoreEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (v['type'] === 'team' && typeof v['team'] === 'string') {
    const config = v['config'];
    if (typeof config === 'string' || config === null) return { type: 'team', team: v['team'], config };
    return { type: 'team', team: v['team'] };
  }
  if (v['type'] === 'revoke-token' && typeof v['jti'] === 'string' && typeof v['exp'] === 'number') {
    return { type: 'revoke-token', jti: v['jti'], exp: v['exp'] };
  }
  if (v['type'] === 'revoke-family' && typeof v['sid'] === 'string' && typeof v['until'] === 'number') {
    return { type: 'revoke-family', sid: v['sid'], until: v['until'] };
  }
  if (
    v['type'] === 'groups' &&
    typeof v['sub'] === 'string' &&
    Array.isArray(v['groups']) &&
    v['groups'].every((g) => typeof g === 'string') &&
    typeof v['readAt'] === 'number'
  ) {
    return { type: 'groups', sub: v['sub'], groups: v['groups'], readAt: v['readAt'] };
  }
  if (v['type'] === 'automation-token' && typeof v['id'] === 'string') {
    return { type: 'automation-token', id: v['id'] };
  }
  if (v['type'] === 'data-loss' && isLossKind(v['kind'])) {
    return { type: 'data-loss', kind: v['kind'] };
  }
  if (v['type'] === 'revoke-user' && typeof v['sub'] === 'string' && typeof v['notBefore'] === 'number') {
    return { type: 'revoke-user', sub: v['sub'], notBefore: v['notBefore'] };
  }
  return null;
}
