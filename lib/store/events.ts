/** What one node tells every node (Redis pub/sub, or an in-process emitter for the embedded default). */
export type StoreEvent =
  | { type: 'team'; team: string }
  | { type: 'revoke-token'; jti: string; exp: number }
  | { type: 'revoke-user'; sub: string; notBefore: number }
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
  if (v['type'] === 'team' && typeof v['team'] === 'string') return { type: 'team', team: v['team'] };
  if (v['type'] === 'revoke-token' && typeof v['jti'] === 'string' && typeof v['exp'] === 'number') {
    return { type: 'revoke-token', jti: v['jti'], exp: v['exp'] };
  }
  if (v['type'] === 'revoke-user' && typeof v['sub'] === 'string' && typeof v['notBefore'] === 'number') {
    return { type: 'revoke-user', sub: v['sub'], notBefore: v['notBefore'] };
  }
  return null;
}
