import { Clock } from '../../lib/clock';
import { createMemoryStore } from '../../lib/store';
import { Revocations } from '../../lib/tokens/revocations';

/**
 * A node that hears no events while Redis still answers its commands (the subscriber connection alone
 * is down, as after a failover whose reconnect the driver gave up) catches up by merging every second:
 * a logout made on another node is enforced here within one catch-up, not when the channel is back.
 */
describe('a node cut off from the events but not from the commands', () => {
  const store = createMemoryStore();
  const options = { tokenLifetimeMs: 3_600_000, clock: new Clock() };
  // Two nodes' views over the same records; only `here` is fed events, and it loses them.
  const here = new Revocations(store.revocations, options);
  const elsewhere = new Revocations(store.revocations, options);

  test('learns the revocations other nodes make at its next catch-up, and stays cut off', async () => {
    await here.load();
    await here.handle({ type: 'lost' });
    const lostSince = here.cutOffSince();
    expect(lostSince).not.toBeNull();

    await elsewhere.revokeFamily('family-ended-elsewhere');
    expect(here.isFamilyEnded('family-ended-elsewhere')).toBe(false); // no event reached it

    await here.catchUp();
    expect(here.isFamilyEnded('family-ended-elsewhere')).toBe(true);
    // Merging is not hearing: readiness keeps saying how long it has been cut off.
    expect(here.cutOffSince()).toBe(lostSince);
  });

  test('a node that hears the events does not reload on every catch-up', async () => {
    const hearing = new Revocations(store.revocations, options);
    await hearing.load();
    await elsewhere.revokeFamily('family-two');
    await hearing.catchUp();
    // Events carry this for a node that hears them; the catch-up alone reads nothing.
    expect(hearing.isFamilyEnded('family-two')).toBe(false);
    await hearing.handle({ type: 'resync' });
    expect(hearing.isFamilyEnded('family-two')).toBe(true);
    expect(hearing.cutOffSince()).toBeNull();
  });
});
