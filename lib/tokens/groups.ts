import type { Identity } from '../connector';
import { SkyError } from '../errors';
import type { Clock } from '../clock';
import type { Logger } from '../log';
import type { GrantRecords, SingleUseRecords, StoreEvent } from '../store';
import type { Grants } from './grants';
import type { SkyClaims } from './jwt';

/** A person's groups as Bitbucket last said them, and when (epoch ms). */
export interface GroupsRecord {
  groups: string[];
  readAt: number;
}

export interface CurrentGroupsOptions {
  /** SKY_GROUPS_MAX_AGE: the oldest groups a request may act on before they are read again. */
  maxAgeMs: number;
  /** How long a stored record is worth keeping: no token outlives it. */
  tokenLifetimeMs: number;
  /** The longest one re-read may take (its upstream calls, retries, a refresh of the upstream token). */
  upstreamBudgetMs: number;
  records: GrantRecords;
  leases: SingleUseRecords;
  grants: Grants;
  log: Logger;
  /** The time the nodes agree on: a record's `readAt` is compared with another node's token and clock. */
  clock: Clock;
}

/** After a failed background re-read, this node waits this long (at most) before it tries that user again. */
const RETRY_AFTER_FAILURE_MS = 10_000;
const POLL_MS = 50;

/**
 * Groups that follow Bitbucket (SPEC §5.3): the groups a request acts on are never older than
 * `maxAgeMs`. The check is local (a Map lookup and a clock read): past the bound the user's workspaces
 * and groups are read again from Bitbucket with the sealed upstream token, one node at a time per user,
 * and every node takes the result (Redis plus pub/sub), in the background while the last groups are
 * within twice the bound; past that the request waits for the re-read, and when Bitbucket cannot answer
 * the group-derived roles are dropped (fail closed), until a re-read succeeds.
 */
export class CurrentGroups {
  private readonly known = new Map<string, GroupsRecord>();
  /** The identity a token's claims act as with a given record: built once per pair (the guards' hot path). */
  private readonly acting = new WeakMap<
    SkyClaims,
    { record: GroupsRecord | undefined; identity: Identity }
  >();
  /** Identities whose groups were dropped as too old: the guards say so in their 403. */
  private readonly dropped = new WeakSet<Identity>();
  private readonly rereading = new Map<string, Promise<boolean>>();
  private readonly failedAt = new Map<string, number>();

  constructor(private readonly options: CurrentGroupsOptions) {}

  get maxAgeMs(): number {
    return this.options.maxAgeMs;
  }

  /** Feed every store event here. */
  handle(event: StoreEvent): void {
    if (event.type === 'groups') this.note(event.sub, { groups: event.groups, readAt: event.readAt });
  }

  /** The groups read at a login or refresh: every node learns them, so older tokens act on them too. */
  async remember(sub: string, groups: string[], readAt = this.options.clock.now()): Promise<void> {
    const record = { groups: [...groups], readAt };
    this.note(sub, record);
    await this.options.records.saveGroups(sub, record, Math.ceil(this.options.tokenLifetimeMs / 1000));
  }

  private note(sub: string, record: GroupsRecord): void {
    const current = this.known.get(sub);
    if (current && current.readAt >= record.readAt) return;
    this.known.set(
      sub,
      Object.freeze({ groups: Object.freeze([...record.groups]) as string[], readAt: record.readAt }),
    );
    this.failedAt.delete(sub);
    if (this.known.size % 1024 === 0) this.sweep();
  }

  /** Forgets records no token can still act on. */
  private sweep(now = this.options.clock.now()): void {
    for (const [sub, record] of this.known) {
      if (record.readAt + this.options.tokenLifetimeMs < now) this.known.delete(sub);
    }
  }

  /** Whether an identity's groups were dropped because they could not be read again in time. */
  wasDropped(identity: Identity): boolean {
    return this.dropped.has(identity);
  }

  /**
   * The identity a request acts as: the token's, with the freshest groups this node knows. Synchronous
   * unless the groups are past twice the bound (then the request waits for one re-read).
   */
  identityOf(
    claims: SkyClaims,
    fromToken: Identity,
    now = this.options.clock.now(),
  ): Identity | Promise<Identity> {
    const record = this.known.get(claims.sub);
    const tokenAt = claims.iat * 1000;
    const source = record && record.readAt >= tokenAt ? record : undefined;
    const groups = source ? source.groups : fromToken.groups;
    const age = now - (source ? source.readAt : tokenAt);
    // Nobody's role comes from no groups: nothing to keep current.
    if (groups.length === 0 || age <= this.options.maxAgeMs) return this.actingAs(claims, fromToken, source);
    if (age <= 2 * this.options.maxAgeMs) {
      this.inBackground(claims.sub);
      return this.actingAs(claims, fromToken, source);
    }
    return this.reread(claims.sub, true).then((fresh) => {
      if (fresh) return this.identityOf(claims, fromToken);
      const stripped = { ...fromToken, groups: [] };
      this.dropped.add(stripped);
      return stripped;
    });
  }

  private actingAs(claims: SkyClaims, fromToken: Identity, record: GroupsRecord | undefined): Identity {
    if (!record) return fromToken;
    const cached = this.acting.get(claims);
    if (cached && cached.record === record) return cached.identity;
    const identity = { ...fromToken, groups: record.groups };
    this.acting.set(claims, { record, identity });
    return identity;
  }

  private inBackground(sub: string): void {
    const failed = this.failedAt.get(sub);
    const pause = Math.min(RETRY_AFTER_FAILURE_MS, this.options.maxAgeMs / 2);
    if (failed !== undefined && Date.now() - failed < pause) return;
    void this.reread(sub, false);
  }

  /**
   * Reads the person's groups from Bitbucket again, one node at a time per user (a lease in the store);
   * resolves whether this node now knows groups fresher than the bound. `wait`: when another node holds
   * the lease, wait for its result instead of giving up at once.
   */
  private reread(sub: string, wait: boolean): Promise<boolean> {
    let running = this.rereading.get(sub);
    if (!running) {
      running = this.readOnce(sub, wait).finally(() => this.rereading.delete(sub));
      this.rereading.set(sub, running);
    }
    return running;
  }

  private fresh(sub: string): boolean {
    const record = this.known.get(sub);
    return record !== undefined && this.options.clock.now() - record.readAt <= this.options.maxAgeMs;
  }

  private async readOnce(sub: string, wait: boolean): Promise<boolean> {
    const { leases, grants, log, upstreamBudgetMs } = this.options;
    const lease = `groups-lease:${sub}`;
    try {
      // Another node may have read them meanwhile (and this node missed its event): the store has them.
      const stored = await this.options.records.groups(sub);
      if (stored) this.note(sub, stored);
      if (this.fresh(sub)) return true;
      const deadline = Date.now() + upstreamBudgetMs;
      while (!(await leases.put(lease, '', upstreamBudgetMs))) {
        // Another node is reading them: its result arrives by pub/sub, or its lease is released.
        if (!wait || Date.now() > deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        if (this.fresh(sub)) return true;
      }
      try {
        const readAt = this.options.clock.now();
        const identity: Identity = await grants.identityOf(sub);
        await this.remember(sub, identity.groups, readAt);
        log.info({ sub, groups: identity.groups.length }, 'groups read again from the upstream');
        return true;
      } finally {
        await leases.take(lease);
      }
    } catch (err) {
      this.failedAt.set(sub, Date.now());
      log.warn(
        { sub, err: err instanceof SkyError ? `${err.code}: ${err.message}` : (err as Error).message },
        'could not read the groups again: the last ones hold until twice SKY_GROUPS_MAX_AGE',
      );
      return false;
    }
  }
}
