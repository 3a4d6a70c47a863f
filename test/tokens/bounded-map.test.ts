import { BoundedMap } from '../../lib/bounded-map';

/** The one bounded cache of sky's node-local caches (verified tokens, team configs, teams last found). */
describe('BoundedMap', () => {
  test('holds at most its limit, dropping the oldest insertion; a hit does not move an entry', () => {
    const map = new BoundedMap<string, number>(3);
    for (const [i, key] of ['a', 'b', 'c'].entries()) map.set(key, i);
    expect(map.get('a')).toBe(0); // read: not moved
    map.set('d', 3);
    expect([...map.keys()]).toEqual(['b', 'c', 'd']);
    map.set('b', 10); // an update keeps its place, and nothing is dropped
    expect([...map.entries()]).toEqual([
      ['b', 10],
      ['c', 2],
      ['d', 3],
    ]);
    for (let i = 0; i < 10_000; i++) map.set(`k${i}`, i);
    expect(map.size).toBe(3);
    expect(map.oldest()).toEqual(['k9997', 9997]);
  });

  test('a limit of 0 keeps nothing; dropOldest on an empty map does nothing', () => {
    const none = new BoundedMap<string, number>(0);
    none.set('a', 1);
    expect(none.size).toBe(0);
    expect(none.oldest()).toBeUndefined();
    none.dropOldest();
    expect(none.size).toBe(0);
  });
});
