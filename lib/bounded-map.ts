/**
 * A Map that holds at most `limit` entries: a set past that drops the oldest insertion (first in,
 * first out; a hit is not moved). sky's node-local caches — verified tokens, team configs, the teams
 * last found per person — use it, so a node's memory never grows with what it is asked. A Map itself
 * rather than an LRU library's object: a hit stays one Map.get, the guard's hot path (bench scenario 1).
 */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(readonly limit: number) {
    super();
  }

  override set(key: K, value: V): this {
    if (this.limit <= 0) return this;
    super.set(key, value);
    if (this.size > this.limit) this.dropOldest();
    return this;
  }

  /** The oldest entry, or undefined when empty. */
  oldest(): [K, V] | undefined {
    const first = this.entries().next();
    return first.done ? undefined : first.value;
  }

  dropOldest(): void {
    const first = this.keys().next();
    if (!first.done) this.delete(first.value);
  }
}
