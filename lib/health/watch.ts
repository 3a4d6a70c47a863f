import { type Clock, SKEW_WARN_MS } from '../clock';
import { SkyError } from '../errors';
import type { Logger } from '../log';
import {
  LOSS_KINDS,
  UnconfirmedWrite,
  type LossKind,
  type LossMarks,
  type Store,
  type StoreEvent,
} from '../store';
import type { TeamAuth } from '../teams/auth';
import type { TeamStore } from '../teams/store';
import type { Revocations } from '../tokens/revocations';
import type { Metrics } from './metrics';

/** How often a node checks that Redis still holds what it knows (three counts and one HGET). */
const CHECK_EVERY_MS = 1_000;
/** How often it reads Redis's clock, reloads every revocation (a merge) and recounts the replicas. */
const SYNC_EVERY_MS = 60_000;
/** After a reconnect the revocations are merged again this long after it (events may trail it). */
const RESYNC_AGAIN_MS = [1_000, 3_000, 10_000];
/** A clock that stays off is reported again this often. */
const SKEW_REPEAT_MS = 10 * 60_000;
/** A loss keeps the node degraded at least this long, and until a later check finds the store whole. */
const LOSS_HOLD_MS = 10_000;

/** The reason /readyz gives for each kind of loss. */
const LOSS: Record<LossKind, string> = {
  teams:
    'Redis lost the team configs (team main was gone): main is written again; restore the other teams from a backup',
  revocations: 'Redis lost revocations: the nodes write back the ones they know',
};

/** What /readyz answers: `degraded` still serves (it is the node that knows); `unavailable` does not. */
export interface Readiness {
  status: 'ready' | 'degraded' | 'unavailable';
  reasons: string[];
}

export interface StoreWatchOptions {
  store: Store;
  teams: TeamStore;
  revocations: Revocations;
  mainTeam: TeamAuth;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
  /** SKY_REDIS_CHECKS: 'strict' refuses to start on a Redis that may lose sky's keys. */
  checks: 'strict' | 'warn';
}

/**
 * Keeps SPEC §8's promise that nothing comes back from the dead. At start and on every reconnect it
 * checks what sky needs of Redis (persistence, noeviction), writes `main` and merges the revocations.
 * Every second it checks that Redis still holds team `main` and at least the revocations this node
 * knows; when not (FLUSHALL, a restart without its data, an eviction), it says so at error level,
 * counts it, reports degraded, and writes back what it knows. Every minute it measures the clock.
 */
export class StoreWatch {
  private timer: NodeJS.Timeout | null = null;
  private checking = false;
  private started = false;
  private lastSync = 0;
  private skewWarnedAt = 0;
  /** Reasons the node is degraded: losses it found (→ when), and what Redis's settings risk. */
  private readonly losses = new Map<string, number>();
  private risks: string[] = [];
  /** The loss marks in the store at this node's last look (a new one: a loss another node reported). */
  private marks: LossMarks = {};

  constructor(private readonly options: StoreWatchOptions) {}

  /** Everything a node does before it serves; throws when the store cannot be reached or is unsafe. */
  async start(): Promise<void> {
    const { store, revocations } = this.options;
    await store.start();
    await this.checkRequirements(true);
    await this.syncClock();
    await this.writeMain();
    await revocations.load();
    this.marks = await store.lossMarks(); // losses before this node started are not its to report
    this.lastSync = Date.now();
    this.started = true;
    this.timer ??= setInterval(() => void this.check(), CHECK_EVERY_MS);
    this.timer.unref();
  }

  /**
   * Feed every store event here: a reconnect checks Redis again and rewrites `main`; a loss another
   * node found (and healed before this node's own check could see it) is reported here too.
   */
  handle(event: StoreEvent): void {
    if (event.type === 'data-loss') return this.heardLoss(event.kind);
    if (event.type !== 'resync' || !this.started) return;
    // The channel is back, but what was published while it re-subscribed (and, in a failover, what
    // the new master took before this node's subscription reached it) was missed: merge again shortly.
    for (const ms of RESYNC_AGAIN_MS) {
      setTimeout(() => void this.options.revocations.load().catch(() => undefined), ms).unref();
    }
    void (async () => {
      await this.checkRequirements(false);
      await this.writeMain();
      await this.check();
    })().catch((err: unknown) => this.options.log.warn({ err }, 'could not check Redis after a reconnect'));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  readiness(): Readiness {
    if (!this.started)
      return { status: 'unavailable', reasons: ['sky has not started: its store cannot be reached'] };
    try {
      this.options.revocations.assertCurrent();
    } catch (err) {
      return { status: 'unavailable', reasons: [(err as Error).message] };
    }
    const reasons = [...this.losses.keys(), ...this.risks];
    const cutOff = this.options.revocations.cutOffSince();
    if (cutOff !== null) {
      reasons.push(
        `cut off from Redis for ${Math.round((Date.now() - cutOff) / 1000)} s: answering from this node's copies until SKY_OUTAGE_GRACE ends; revocations made on other nodes meanwhile reach it when it is back`,
      );
    }
    return { status: reasons.length === 0 ? 'ready' : 'degraded', reasons };
  }

  /** The settings check: at start a problem stops the node ('strict'); on a reconnect it is logged. */
  private async checkRequirements(atStart: boolean): Promise<void> {
    const { store, log, checks } = this.options;
    const { problems, unchecked } = await store.requirements();
    for (const line of unchecked) log.warn(line);
    if (problems.length > 0 && checks === 'strict' && atStart) {
      throw new SkyError(
        'invalid_config',
        `${problems.join('; ')}. sky needs a Redis that keeps its data (SPEC §8); to start anyway and accept the risk, set SKY_REDIS_CHECKS=warn`,
      );
    }
    for (const line of problems) log.error(`${line} (SKY_REDIS_CHECKS=${checks}: running anyway)`);
    this.risks = problems.map((p) => `unsafe Redis: ${p}`);
    this.updateGauge();
  }

  private async syncClock(): Promise<void> {
    const { store, clock, metrics, log } = this.options;
    const reading = store.clockReading();
    if (!reading) return;
    const skewMs = clock.observe(await reading);
    metrics.clockSkew.set(skewMs / 1000);
    if (Math.abs(skewMs) <= SKEW_WARN_MS) {
      this.skewWarnedAt = 0;
      return;
    }
    if (Date.now() - this.skewWarnedAt < SKEW_REPEAT_MS) return;
    this.skewWarnedAt = Date.now();
    log.warn(
      { skewMs: Math.round(skewMs) },
      `clock skew: this node's clock is ${Math.abs(Math.round(skewMs / 1000))} s ${skewMs > 0 ? 'ahead of' : 'behind'} Redis's clock; sky issues and checks tokens by Redis's time meanwhile; fix this host's clock (NTP)`,
    );
  }

  /**
   * `main` is rewritten at every start and reconnect, so nobody can be locked out (SPEC §6.4). A write
   * no replica confirmed yet (one still syncing) is not worth refusing to start for: Redis took it, and
   * the check rewrites main should a failover lose it.
   */
  private async writeMain(): Promise<void> {
    try {
      await this.options.teams.put('main', this.options.mainTeam);
    } catch (err) {
      if (!(err instanceof UnconfirmedWrite)) throw err;
      this.options.log.warn(`team main was written, but ${err.message}`);
    }
  }

  /** One pass of the integrity check (never two at once); a Redis that cannot be reached is skipped. */
  private async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      await this.options.revocations.catchUp();
      await this.checkTeams();
      await this.checkRevocations();
      await this.checkMarks();
      if (Date.now() - this.lastSync >= SYNC_EVERY_MS) {
        this.lastSync = Date.now();
        await this.syncClock();
        await this.options.revocations.load();
        await this.checkRequirements(false);
      }
    } catch (err) {
      this.options.log.debug({ err }, 'store check skipped');
    } finally {
      this.checking = false;
      this.updateGauge(); // a node cut off from Redis is degraded too (readiness names why)
    }
  }

  private async checkTeams(): Promise<void> {
    const { store, teams, log } = this.options;
    if ((await store.teams.get('main')) !== null) return this.whole(LOSS.teams);
    this.lost('teams');
    log.error(
      'the team store was emptied under this node (team main is gone): main is written again; every other team config must be restored from a backup',
    );
    teams.handle({ type: 'resync' });
    await this.writeMain();
    this.marks.teams = await store.reportLoss('teams');
  }

  private async checkRevocations(): Promise<void> {
    const { store, revocations, metrics, log } = this.options;
    if (!(await revocations.storeLost())) return this.whole(LOSS.revocations);
    this.lost('revocations');
    log.error(
      'Redis holds fewer revocations than this node knows (emptied, restarted without its data, or evicted): writing them back',
    );
    const written = await revocations.heal();
    metrics.revocationsRestored.inc(written);
    log.error({ written }, 'revocations written back to Redis');
    this.marks.revocations = await store.reportLoss('revocations');
  }

  /**
   * A loss another node reported since this node's last look. Its event is the fast way to hear it; the
   * mark is the way that cannot be missed: after a restart of Redis the node that reconnects first heals
   * before the others have subscribed again, and their own checks then find the store whole.
   */
  private async checkMarks(): Promise<void> {
    const marks = await this.options.store.lossMarks();
    for (const kind of LOSS_KINDS) {
      const mark = marks[kind];
      if (mark !== undefined && mark !== this.marks[kind]) this.heardLoss(kind);
    }
    this.marks = marks;
  }

  /** A loss found here or by another node: counted and logged once per episode, degraded meanwhile. */
  private lost(kind: LossKind): boolean {
    const first = !this.losses.has(LOSS[kind]);
    if (first) this.options.metrics.dataLoss.inc({ kind });
    this.losses.set(LOSS[kind], Date.now());
    this.updateGauge();
    return first;
  }

  private heardLoss(kind: LossKind): void {
    if (!this.started || !this.lost(kind)) return;
    this.options.log.error(
      `another node found Redis missing ${kind === 'teams' ? 'the team configs' : 'revocations'} and wrote back what it knew: ${LOSS[kind]}`,
    );
  }

  /** A check found the store whole again: the loss clears once it is old enough. */
  private whole(reason: string): void {
    const since = this.losses.get(reason);
    if (since === undefined || Date.now() - since < LOSS_HOLD_MS) return;
    this.losses.delete(reason);
    this.updateGauge();
    this.options.log.info(`healed: ${reason}`);
  }

  private updateGauge(): void {
    this.options.metrics.degraded.set(this.readiness().status === 'ready' ? 0 : 1);
    this.options.metrics.outageGrace.set(this.options.revocations.cutOffSince() === null ? 0 : 1);
  }
}
