import { SkyError } from './errors';

/**
 * The time every node agrees on (SPEC §8): Redis's clock. Each node measures its own clock against
 * Redis `TIME` at start and every minute, and issues, verifies and revokes by the corrected time, so a
 * node whose clock runs fast neither misses another node's revocations nor refuses its fresh logins.
 */

/** What the correction leaves: half a round trip and a minute's drift. Comparisons across nodes carry it. */
export const CLOCK_MARGIN_MS = 2_000;
/** A node this far from Redis's clock logs a warning (its NTP is broken; sky corrects for it meanwhile). */
export const SKEW_WARN_MS = 2_000;
/** A node this far off refuses to issue tokens: one of the clocks is badly wrong, and tokens would be too. */
export const SKEW_REFUSE_MS = 5 * 60_000;

/** One reading of Redis `TIME`, bracketed by this node's clock before and after the round trip. */
export interface ClockReading {
  redisMs: number;
  sentAt: number;
  receivedAt: number;
}

export class Clock {
  /** Redis's clock minus this node's, as last measured (0 until then, and for the embedded store). */
  private offsetMs = 0;

  /** Epoch milliseconds by Redis's clock. */
  now(): number {
    return Date.now() + this.offsetMs;
  }

  /** How far this node's own clock is ahead of Redis's (negative: behind). */
  get skewMs(): number {
    return -this.offsetMs;
  }

  /** Takes a reading; answers the skew it shows. */
  observe({ redisMs, sentAt, receivedAt }: ClockReading): number {
    this.offsetMs = redisMs - (sentAt + receivedAt) / 2;
    return this.skewMs;
  }

  /** Before signing a token: a node far beyond the bound issues nothing (503), with the reason. */
  assertCanIssue(): void {
    if (Math.abs(this.offsetMs) > SKEW_REFUSE_MS) {
      throw new SkyError(
        'clock_skew',
        `this node's clock is ${Math.round(this.skewMs / 1000)} s off Redis's clock (more than ${SKEW_REFUSE_MS / 1000} s): it issues no tokens until NTP fixes it`,
      );
    }
  }
}
