import type { AuditTrail } from '../audit/trail';
import { createHmac, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Store as SessionStore } from 'express-session';
import type { Connector, Identity, UpstreamTokens } from '../connector';
import { SkyError, isSkyError } from '../errors';
import type { Logger } from '../log';
import type { GrantRecords, SingleUseRecords } from '../store';
import { subjectOf } from './jwt';
import { deriveSecret, type SigningKey } from './keys';
import { verifierMatches } from './pkce';
import type { Revocations } from './revocations';
import { Vault } from './vault';

/** `<family id>.<secret>`, both 32 random bytes in base64url. */
const REFRESH_TOKEN = /^([A-Za-z0-9_-]{43})\.[A-Za-z0-9_-]{43}$/;
/** An upstream access token this close to its expiry is refreshed before use. */
const EXPIRY_MARGIN_MS = 60_000;
const POLL_MS = 50;
/** An authorization code of the CLI's login lives this long (RFC 6749 §4.1.2 recommends ≤ 10 minutes). */
const CODE_TTL_MS = 60_000;
/** 32 random bytes, base64url. */
const AUTHORIZATION_CODE = /^[A-Za-z0-9_-]{43}$/;

export interface GrantsOptions {
  /** The signing key, then previous private keys: what they sealed or hashed still opens (a rotation). */
  keys: readonly SigningKey[];
  /** Where family ends on reuse and user-wide revocations are recorded. */
  audit?: AuditTrail;
  records: GrantRecords;
  /** Where the CLI's authorization codes wait (single use, shared by every node). */
  codes: SingleUseRecords;
  sessions: SessionStore;
  /** The enabled connectors: a subject's prefix names the one that re-reads the person. */
  connectors: readonly Connector[];
  revocations: Revocations;
  /** Absolute lifetime of a refresh family, and of the sealed upstream tokens. */
  refreshTtlSeconds: number;
  /** One upstream call's timeout: bounds how long a refresh waits on another node's lease. */
  upstreamTimeoutMs: number;
  log: Logger;
}

/** A login family (the JWT's `sid`) and, when the client keeps one, its current refresh token. */
export interface LoginFamily {
  familyId: string;
  refreshToken?: string;
}

/** A refresh token as handed to a client, and the family it belongs to. */
export interface IssuedRefresh extends LoginFamily {
  refreshToken: string;
}

/**
 * A grant checked up to its last step: who it is for, and the step that commits its login family
 * (rotates the refresh token, or starts a family). The caller runs every read that may fail (teams)
 * before `family()`, so no answer after the commit is an error: a client that got no token never
 * holds a refresh token that was spent for it.
 */
export interface Redeemed {
  identity: Identity;
  family: () => Promise<IssuedRefresh>;
}

/** What an authorization code stands for until the CLI redeems it. */
interface PendingCode {
  sub: string;
  challenge: string;
  identity: Identity;
}

/**
 * Upstream tokens as kept. `answerLost`: a refresh was sent whose answer nobody saw (it timed out, or
 * the node died or stopped while it was in flight): the provider may have spent the refresh token.
 * It is written BEFORE each upstream refresh and cleared by its answer, so a crash leaves it behind.
 */
type KeptUpstream = UpstreamTokens & { answerLost?: boolean };

/** A refresh lease lives this long unless its holder renews it: a holder that died frees it so soon. */
const leaseMs = (upstreamTimeoutMs: number): number => Math.min(3_000, Math.max(300, upstreamTimeoutMs / 2));

const invalidGrant = (description: string, cause?: unknown): SkyError =>
  new SkyError('invalid_grant', description, cause === undefined ? {} : { cause });

/**
 * sky's side of dex's promise (SPEC §8): the upstream tokens kept sealed, rotating refresh tokens stored
 * as HMACs, reuse of a rotated token ends its family, the upstream refresh done by one node at a time,
 * and a user whose upstream grant is gone loses every token, refresh token and session at once.
 */
export class Grants {
  private readonly vault: Vault;
  /** The refresh HMAC keys: the signing key's first (new hashes), then previous keys' (old tokens). */
  private readonly hmacKeys: Buffer[];
  /** hmacKeys[0]: the one new hashes are made with. */
  private readonly signingHmac: Buffer;
  /** The refresh leases this node holds: user → owner token. */
  private readonly held = new Map<string, string>();

  constructor(private readonly options: GrantsOptions) {
    this.vault = new Vault(options.keys);
    this.hmacKeys = options.keys.map((k) => deriveSecret(k, 'refresh'));
    this.signingHmac = this.hmacKeys[0] as Buffer;
  }

  /** At login: keeps the upstream tokens (if the connector has any) sealed and starts a refresh family for one client. */
  async start(identity: Identity, upstream?: UpstreamTokens): Promise<IssuedRefresh> {
    const sub = subjectOf(identity);
    if (upstream) await this.saveUpstream(sub, upstream);
    return this.newFamily(sub);
  }

  /** The connector that knows the person a subject names (`<connector id>:<user id>`). */
  private connectorOf(sub: string): Connector {
    const connector = this.options.connectors.find((c) => sub.startsWith(`${c.id}:`));
    if (!connector) throw invalidGrant('this login belongs to a connector this CI server no longer offers');
    return connector;
  }

  /** A family of its own for a token no client refreshes (Concourse's fly takes a bare token). */
  loneFamily(): LoginFamily {
    return { familyId: randomBytes(32).toString('base64url') };
  }

  /**
   * The CLI's login, once the person clicked on the page (RFC 8252): a single-use code bound to the
   * CLI's PKCE challenge. No family exists until the CLI redeems it with the verifier.
   */
  async authorize(identity: Identity, challenge: string): Promise<string> {
    const code = randomBytes(32).toString('base64url');
    const pending: PendingCode = { sub: subjectOf(identity), challenge, identity };
    const sealed = this.vault.seal(JSON.stringify(pending), 'authorization code');
    await this.options.codes.put(this.codeId(code, this.signingHmac), sealed, CODE_TTL_MS);
    return code;
  }

  /** Redeems a code with the CLI's verifier: a new family of the person's, with its first refresh token. */
  async redeemCode(code: string, verifier: string): Promise<Redeemed> {
    if (!AUTHORIZATION_CODE.test(code)) throw invalidGrant('the authorization code is malformed');
    // Taken at once: a code is spent by its first redemption, right or wrong.
    let sealed: string | null = null;
    for (const key of this.hmacKeys) {
      if ((sealed = await this.options.codes.take(this.codeId(code, key))) !== null) break;
    }
    if (sealed === null) throw invalidGrant('the authorization code is unknown, expired or already used');
    const pending = JSON.parse(this.vault.open(sealed, 'authorization code')) as PendingCode;
    if (!verifierMatches(verifier, pending.challenge)) {
      throw invalidGrant('code_verifier does not match the code challenge of this login');
    }
    if (!this.connectorOf(pending.sub).revalidate && !(await this.upstream(pending.sub))) {
      throw invalidGrant('the upstream grant is gone (revoked or expired): log in again');
    }
    return { identity: pending.identity, family: () => this.newFamily(pending.sub) };
  }

  /** Where a code waits: under the signing key's HMAC, or (made before a rotation) a previous key's. */
  private codeId(code: string, key: Buffer): string {
    return `code:${createHmac('sha256', key).update(`code ${code}`).digest('base64url')}`;
  }

  /**
   * Redeems a refresh token: the upstream grant is refreshed when its access token has expired, the
   * identity and groups are read anew; `family()` rotates the token. Anything wrong is `invalid_grant`.
   */
  async redeem(refreshToken: string): Promise<Redeemed> {
    const familyId = REFRESH_TOKEN.exec(refreshToken)?.[1];
    if (!familyId) throw invalidGrant('the refresh token is malformed');
    // Hashed with the signing key's HMAC key, or (a token issued before a rotation) a previous key's.
    let hash = this.hash(refreshToken);
    let found = await this.options.records.inspect(familyId, hash);
    for (const key of this.hmacKeys.slice(1)) {
      if (found.state !== 'unknown') break;
      hash = this.hash(refreshToken, key);
      found = await this.options.records.inspect(familyId, hash);
    }
    if (found.state === 'reused') {
      await this.endReused(familyId, found.sub);
      throw invalidGrant('the refresh token was already used; its family is revoked');
    }
    if (found.state === 'unknown' || !found.sub)
      throw invalidGrant('the refresh token is unknown, expired or revoked');
    const sub = found.sub;
    const identity = await this.currentIdentity(sub);
    if (subjectOf(identity) !== sub) throw invalidGrant('the upstream grant belongs to another user');
    const rotate = async (): Promise<IssuedRefresh> => {
      const next = this.newToken(familyId);
      const rotated = await this.options.records.rotate(familyId, hash, this.hash(next));
      if (rotated === 'reused') await this.endReused(familyId, sub);
      if (rotated !== 'current')
        throw invalidGrant('the refresh token was used concurrently; its family is revoked');
      // A logout that ran while this refresh read the upstream API ended the family: issue nothing.
      if (this.options.revocations.isFamilyEnded(familyId)) throw invalidGrant('the login has ended');
      return { refreshToken: next, familyId };
    };
    return { identity, family: rotate };
  }

  /** A spent refresh token came back: whoever holds it may hold the family's access tokens too, so all end. */
  private async endReused(familyId: string, sub: string | undefined): Promise<void> {
    await this.options.revocations.revokeFamily(familyId);
    this.options.log.warn({ sub }, 'a rotated refresh token was reused: its family is revoked');
    await this.options.audit?.record({
      action: 'family.end',
      actor: { system: true },
      detail: { sub: sub ?? null, reason: 'a spent refresh token was presented again' },
    });
  }

  /**
   * Ends a login family (logout): every access token of it on every node, its refresh token, and so
   * the session that keeps it. The revocation goes first, so a refresh racing it never leaves a live token.
   */
  async end(familyId: string): Promise<void> {
    await this.options.revocations.revokeFamily(familyId);
    await this.options.records.endFamily(familyId);
  }

  /** The browser session of a user, destroyed when the user is revoked. */
  rememberSession(sub: string, sessionId: string): Promise<void> {
    return this.options.records.rememberSession(sub, sessionId, this.options.refreshTtlSeconds);
  }

  /** A browser session that ended (logout) leaves the user's index. */
  forgetSession(sub: string, sessionId: string): Promise<void> {
    return this.options.records.forgetSession(sub, sessionId);
  }

  /** Seals a refresh token for keeping in a server-side session. */
  sealForSession(refreshToken: string, sub: string): string {
    return this.vault.seal(refreshToken, `session ${sub}`);
  }

  openFromSession(sealed: string, sub: string): string {
    return this.vault.open(sealed, `session ${sub}`);
  }

  /**
   * Every token, refresh token and session of the user, on every node: one "not before" write that all
   * nodes hear within a second, then the families, the sealed upstream tokens and the sessions go.
   */
  async revokeUser(sub: string, reason: string): Promise<void> {
    await this.options.revocations.revokeUser(sub);
    await this.options.audit?.record({
      action: 'user.revoke',
      actor: { system: true },
      detail: { sub, reason },
    });
    const sessions = await this.options.records.forgetUser(sub);
    await Promise.all(
      sessions.map(
        (sid) =>
          new Promise<void>((resolve) =>
            this.options.sessions.destroy(sid, (err: unknown) => {
              if (err) this.options.log.warn({ err, sub }, 'could not destroy a session of a revoked user');
              resolve();
            }),
          ),
      ),
    );
    this.options.log.warn({ sub, sessions: sessions.length, reason }, 'user revoked on every node');
  }

  /** Who the person is upstream now, with their current groups (SKY_GROUPS_MAX_AGE re-reads). */
  async identityOf(sub: string): Promise<Identity> {
    const identity = await this.currentIdentity(sub);
    if (subjectOf(identity) !== sub) throw invalidGrant('the upstream grant belongs to another user');
    return identity;
  }

  /** Identity from the upstream API; a refused access token gets one upstream refresh, then counts as revoked. */
  private async currentIdentity(sub: string): Promise<Identity> {
    const connector = this.connectorOf(sub);
    // A connector without upstream tokens (local users) answers from its own configuration.
    if (connector.revalidate) return connector.revalidate(sub.slice(connector.id.length + 1));
    if (!connector.identity) throw invalidGrant('this connector cannot re-read a person: log in again');
    const identity = connector.identity;
    let upstream = await this.upstream(sub);
    if (!upstream) throw invalidGrant('the upstream grant is gone (revoked or expired): log in again');
    if (upstream.expiresAt - EXPIRY_MARGIN_MS <= Date.now())
      upstream = await this.refreshUpstream(sub, upstream);
    try {
      return await identity(upstream.accessToken);
    } catch (err) {
      if (!(isSkyError(err) && err.code === 'upstream_revoked')) throw err;
    }
    const refreshed = await this.refreshUpstream(sub, upstream);
    try {
      return await identity(refreshed.accessToken);
    } catch (err) {
      if (isSkyError(err) && err.code === 'upstream_revoked') {
        await this.revokeUser(sub, 'the upstream API refused a freshly refreshed token');
        throw invalidGrant('the upstream grant was revoked: every session of this user is revoked', err);
      }
      throw err;
    }
  }

  /**
   * Replaces `stale` with fresh upstream tokens. One node at a time per user (a lease in the store, kept
   * alive while its holder works): the others wait for its result instead of spending the rotating
   * upstream refresh token twice, for at most one upstream call's timeout. A holder that died frees
   * the lease within a second or two; the next node then finds the refresh it left in flight.
   */
  private async refreshUpstream(sub: string, stale: UpstreamTokens): Promise<UpstreamTokens> {
    const { records, upstreamTimeoutMs } = this.options;
    const owner = randomBytes(12).toString('base64url');
    const ttl = leaseMs(upstreamTimeoutMs);
    const deadline = Date.now() + upstreamTimeoutMs;
    for (;;) {
      if (await records.lock(sub, owner, ttl)) {
        this.held.set(sub, owner);
        const renewal = setInterval(() => {
          records.renew(sub, owner, ttl).catch(() => undefined);
        }, ttl / 3);
        try {
          return await this.refreshHoldingLease(sub, stale);
        } finally {
          clearInterval(renewal);
          this.held.delete(sub);
          await records.unlock(sub, owner);
        }
      }
      await sleep(POLL_MS);
      const latest = await this.upstream(sub);
      if (!latest) throw invalidGrant('the upstream grant was revoked meanwhile');
      if (latest.accessToken !== stale.accessToken) return latest;
      if (Date.now() > deadline) {
        throw new SkyError(
          'upstream_timeout',
          'another node is refreshing this user’s grant and has not finished: try again',
        );
      }
    }
  }

  /** Gives up every lease this node holds (shutdown): the refresh stays marked in flight for the next node. */
  async releaseLeases(): Promise<void> {
    const held = [...this.held];
    this.held.clear();
    await Promise.allSettled(held.map(([sub, owner]) => this.options.records.unlock(sub, owner)));
  }

  private async refreshHoldingLease(sub: string, stale: KeptUpstream): Promise<UpstreamTokens> {
    // Another node may have finished between our read and our lease.
    const latest = await this.upstream(sub);
    if (!latest) throw invalidGrant('the upstream grant was revoked meanwhile');
    if (latest.accessToken !== stale.accessToken) return latest;
    if (!latest.refreshToken) throw invalidGrant('the upstream grant cannot be refreshed: log in again');
    // Set by an earlier refresh whose answer never came (a timeout, or a node that died holding the lease).
    const outcomeUnknown = latest.answerLost === true;
    await this.saveUpstream(sub, { ...latest, answerLost: true });
    const { refresh } = this.connectorOf(sub);
    if (!refresh) throw invalidGrant('the upstream grant cannot be refreshed: log in again');
    let fresh: UpstreamTokens;
    try {
      fresh = await refresh(latest.refreshToken);
    } catch (err) {
      if (isSkyError(err) && err.code === 'upstream_revoked' && outcomeUnknown) {
        // Refused because the provider rotated its token in an answer sky never saw, not because the
        // user removed the app: nobody is revoked, but this grant cannot be refreshed any more.
        const { refreshToken: _spent, answerLost: _lost, ...rest } = latest;
        await this.saveUpstream(sub, { ...rest, expiresAt: 0 });
        this.options.log.warn(
          { sub },
          'an upstream refresh answer was lost earlier (a timeout, or a node that stopped mid-refresh): this login must log in again; no session is revoked',
        );
        throw invalidGrant('the upstream grant was lost in an interrupted refresh: log in again', err);
      }
      if (isSkyError(err) && err.code === 'upstream_revoked') {
        await this.revokeUser(sub, 'the upstream refresh was refused (the user removed the app)');
        throw invalidGrant('the upstream grant was revoked: every session of this user is revoked', err);
      }
      // No answer: the provider may have rotated its refresh token in it, so the mark stays. Any
      // other answer spent nothing: the record is as it was.
      const answered = !(
        isSkyError(err) &&
        (err.code === 'upstream_timeout' || err.code === 'upstream_unavailable')
      );
      if (answered) await this.saveUpstream(sub, latest);
      throw err;
    }
    // Providers that do not rotate answer without a refresh token: the old one stays good.
    const saved = fresh.refreshToken ? fresh : { ...fresh, refreshToken: latest.refreshToken };
    await this.saveUpstream(sub, saved);
    this.options.log.info({ sub }, 'upstream tokens refreshed');
    return saved;
  }

  private async upstream(sub: string): Promise<KeptUpstream | null> {
    const sealed = await this.options.records.upstream(sub);
    return sealed === null ? null : (JSON.parse(this.vault.open(sealed, `upstream ${sub}`)) as KeptUpstream);
  }

  private saveUpstream(sub: string, tokens: KeptUpstream): Promise<void> {
    const sealed = this.vault.seal(JSON.stringify(tokens), `upstream ${sub}`);
    return this.options.records.saveUpstream(sub, sealed, this.options.refreshTtlSeconds);
  }

  private async newFamily(sub: string): Promise<IssuedRefresh> {
    const familyId = randomBytes(32).toString('base64url');
    const refreshToken = this.newToken(familyId);
    await this.options.records.createFamily(
      sub,
      familyId,
      this.hash(refreshToken),
      this.options.refreshTtlSeconds,
    );
    return { refreshToken, familyId };
  }

  private newToken(familyId: string): string {
    return `${familyId}.${randomBytes(32).toString('base64url')}`;
  }

  /** A refresh token as stored: its HMAC under the signing key's HMAC key (or `key`, a previous one's). */
  private hash(refreshToken: string, key = this.signingHmac): string {
    return createHmac('sha256', key).update(refreshToken).digest('base64url');
  }
}
