import { Clock } from '../../lib/clock';
import { createLogger } from '../../lib/log';
import { createMemoryStore } from '../../lib/store';
import { AutomationTokens, parseExpiresIn, type AutomationToken } from '../../lib/tokens/automation';
import { generateSigningKey } from '../../lib/tokens/keys';
import { Revocations } from '../../lib/tokens/revocations';

/**
 * Automation tokens on two nodes over one store: expiry is each node's own comparison with its clock
 * (no event needed), the sweep that removes expired tokens reports each expiry once across the nodes,
 * and last uses reach the store in one batched write, not one per request.
 */
class ShiftedClock extends Clock {
  shiftMs = 0;
  override now(): number {
    return super.now() + this.shiftMs;
  }
}

const key = generateSigningKey();
const store = createMemoryStore();
const clock = new ShiftedClock();
const expired: AutomationToken[] = [];
function node(): AutomationTokens {
  const revocations = new Revocations(store.revocations, { tokenLifetimeMs: 3_600_000, clock });
  const tokens = new AutomationTokens({
    records: store.automationTokens,
    revocations,
    keys: [key],
    clock,
    log: createLogger('silent'),
    expired: (t) => expired.push(t),
  });
  store.subscribe((event) => tokens.handle(event));
  return tokens;
}
const [one, two] = [node(), node()];
afterAll(async () => {
  await one.close();
  await two.close();
  await store.close();
});
const creator = { sub: 'bitbucket-cloud:alice', name: 'Alice' };

test('an expired token is refused by both nodes at once, and its expiry is reported once', async () => {
  const { secret } = await one.create({
    team: 'ci',
    name: 'bot',
    role: 'viewer',
    expiresInMs: 60_000,
    creator,
  });
  expect(await two.lookup(secret)).toMatchObject({ token: { team: 'ci', name: 'bot' } });
  clock.shiftMs = 61_000;
  expect(await one.lookup(secret)).toEqual({ refused: 'automation token expired' });
  expect(await two.lookup(secret)).toEqual({ refused: 'automation token expired' });
  await Promise.all([one.sweep(), two.sweep()]);
  await one.sweep();
  expect(expired.map((t) => t.name)).toEqual(['bot']);
  expect(await one.list('ci')).toEqual([]);
  clock.shiftMs = 0;
});

test('last uses are written in one batch, and the list shows them', async () => {
  const { secret } = await one.create({
    team: 'ops',
    name: 'bot',
    role: 'member',
    expiresInMs: 86_400_000,
    creator,
  });
  for (let i = 0; i < 50; i++) await one.lookup(secret);
  const [record] = [...(await store.automationTokens.list('ops')).values()];
  const { id } = JSON.parse(record ?? '{}') as { id: string };
  expect(await store.automationTokens.lastUsed([id])).toEqual([null]); // nothing written per request
  expect((await one.list('ops'))[0]?.last_used_at).toEqual(expect.any(String)); // this node's own, not yet written
  expect((await two.list('ops'))[0]?.last_used_at).toBeNull();
  await one.flush();
  expect((await two.list('ops'))[0]?.last_used_at).toEqual(expect.any(String));
});

test('expires_in: seconds, days or a Go duration, within 1 minute and the maximum', () => {
  const max = 365 * 86_400_000;
  expect(parseExpiresIn(3600, max)).toBe(3_600_000);
  expect(parseExpiresIn('30d', max)).toBe(30 * 86_400_000);
  expect(parseExpiresIn('1.5h', max)).toBe(5_400_000);
  expect(parseExpiresIn('90m', max)).toBe(5_400_000);
  for (const bad of ['366d', '59s', '0', '', 'tomorrow', '-1h', null, {}, 1e300, Number.NaN])
    expect(() => parseExpiresIn(bad, max)).toThrow(/invalid expires_in/);
});
