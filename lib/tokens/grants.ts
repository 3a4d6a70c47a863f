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
  key: SigningKey;
  records: GrantRecords;
  /** Where the CLI's authorization codes wait (single use, shared by every node). */
  codes: SingleUseRecords;
  sessions: SessionStore;
  connector: Connector;
  revocations: Revocations;
  /** Absolute lifetime of a refresh family, and of the sealed upstream tokens. */
  refreshTtlSeconds: number;
  /** The longest one upstream refresh may take (its timeouts and retries); bounds the lease and the wait. */
  upstreamBudgetMs: number;
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

/** What an authorization code stands for until the CLI redeems it. */
interface PendingCode {
  sub: string;
  challenge: string;
  identity: Identity;
}

/** Upstream tokens as kept: `answerLost` when a refresh's answer never came (its token may be spent). */
type KeptUpstream = UpstreamTokens & { answerLost?: boolean };

const invalidGrant = (description: string, cause?: unknown): SkyError =>
  new SkyError('invalid_grant', description, cause === undefined ? {} : { cause });

/**
 * sky's side of dex's promise (SPEC §8): the upstream tokens kept sealed, rotating refresh tokens stored
 * as HMACs, reuse of a rotated token ends its family, the upstream refresh done by one node at a time,
 * and a user whose upstream grant is gone loses every token, refresh token and session at once.
 */
export class Grants {
  private readonly vault: Vault;
  private readonly hmacKey: Buffer;

  constructor(private readonly options: GrantsOptions) {
    this.vault = new Vault(options.key);
    this.hmacKey = deriveSecret(options.key, 'refresh');
  }

  /** At login: keeps the upstream tokens sealed and starts a refresh family for one client. */
  async start(identity: Identity, upstream: UpstreamTokens): Promise<IssuedRefresh> {
    const sub = subjectOf(identity);
    await this.saveUpstream(sub, upstream);
    return this.newFamily(sub);
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
    await this.options.codes.put(this.codeId(code), sealed, CODE_TTL_MS);
    return code;
  }

  /** Redeems a code with the CLI's verifier: a new family of the person's, with its first refresh token. */
  async redeemCode(code: string, verifier: string): Promise<{ identity: Identity } & IssuedRefresh> {
    if (!AUTHORIZATION_CODE.test(code)) throw invalidGrant('the authorization code is malformed');
    // Taken at once: a code is spent by its first redemption, right or wrong.
    const sealed = await this.options.codes.take(this.codeId(code));
    if (sealed === null) throw invalidGrant('the authorization code is unknown, expired or already used');
    const pending = JSON.parse(this.vault.open(sealed, 'authorization code')) as PendingCode;
    if (!verifierMatches(verifier, pending.challenge)) {
      throw invalidGrant('code_verifier does not match the code challenge of this login');
    }
    if (!(await this.upstream(pending.sub))) {
      throw invalidGrant('the upstream grant is gone (revoked or expired): log in again');
    }
    return { identity: pending.identity, ...(await this.newFamily(pending.sub)) };
  }

  private codeId(code: string): string {
    return `code:${createHmac('sha256', this.hmacKey).update(`code ${code}`).digest('base64url')}`;
  }

  /**
   * Redeems a refresh token: the upstream grant is refreshed when its access token has expired, the
   * identity and groups are read anew, and the token rotates. Anything wrong is `invalid_grant`.
   */
  async redeem(refreshToken: string): Promise<{ identity: Identity } & IssuedRefresh> {
    const familyId = REFRESH_TOKEN.exec(refreshToken)?.[1];
    if (!familyId) throw invalidGrant('the refresh token is malformed');
    const hash = this.hash(refreshToken);
    const found = await this.options.records.inspect(familyId, hash);
    if (found.state === 'reused') {
      // Whoever holds the spent token may hold the family's access tokens too: they all end.
      await this.options.revocations.revokeFamily(familyId);
      this.options.log.warn({ sub: found.sub }, 'a rotated refresh token was reused: its family is revoked');
      throw invalidGrant('the refresh token was already used; its family is revoked');
    }
    if (found.state === 'unknown' || !found.sub)
      throw invalidGrant('the refresh token is unknown, expired or revoked');
    const sub = found.sub;
    const identity = await this.currentIdentity(sub);
    if (subjectOf(identity) !== sub) throw invalidGrant('the upstream grant belongs to another user');
    const next = this.newToken(familyId);
    const rotated = await this.options.records.rotate(familyId, hash, this.hash(next));
    if (rotated === 'reused') await this.options.revocations.revokeFamily(familyId);
    if (rotated !== 'current')
      throw invalidGrant('the refresh token was used concurrently; its family is revoked');
    // A logout that ran while this refresh read the upstream API ended the family: issue nothing.
    if (this.options.revocations.isFamilyEnded(familyId)) throw invalidGrant('the login has ended');
    return { identity, refreshToken: next, familyId };
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
    let upstream = await this.upstream(sub);
    if (!upstream) throw invalidGrant('the upstream grant is gone (revoked or expired): log in again');
    if (upstream.expiresAt - EXPIRY_MARGIN_MS <= Date.now())
      upstream = await this.refreshUpstream(sub, upstream);
    try {
      return await this.options.connector.identity(upstream.accessToken);
    } catch (err) {
      if (!(isSkyError(err) && err.code === 'upstream_revoked')) throw err;
    }
    const refreshed = await this.refreshUpstream(sub, upstream);
    try {
      return await this.options.connector.identity(refreshed.accessToken);
    } catch (err) {
      if (isSkyError(err) && err.code === 'upstream_revoked') {
        await this.revokeUser(sub, 'the upstream API refused a freshly refreshed token');
        throw invalidGrant('the upstream grant was revoked: every session of this user is revoked', err);
      }
      throw err;
    }
  }

  /**
   * Replaces `stale` with fresh upstream tokens. One node at a time per user (a lease in the store):
   * the others wait for its result instead of spending the rotating upstream refresh token twice.
   */
  private async refreshUpstream(sub: string, stale: UpstreamTokens): Promise<UpstreamTokens> {
    const { records, upstreamBudgetMs } = this.options;
    const owner = randomBytes(12).toString('base64url');
    const deadline = Date.now() + upstreamBudgetMs;
    for (;;) {
      if (await records.lock(sub, owner, upstreamBudgetMs + 5_000)) {
        try {
          return await this.refreshHoldingLease(sub, stale);
        } finally {
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
          'another node is refreshing this user’s grant and has not finished',
        );
      }
    }
  }

  private async refreshHoldingLease(sub: string, stale: KeptUpstream): Promise<UpstreamTokens> {
    // Another node may have finished between our read and our lease.
    const latest = await this.upstream(sub);
    if (!latest) throw invalidGrant('the upstream grant was revoked meanwhile');
    if (latest.accessToken !== stale.accessToken) return latest;
    if (!latest.refreshToken) throw invalidGrant('the upstream grant cannot be refreshed: log in again');
    let fresh: UpstreamTokens;
    try {
      fresh = await this.options.connector.refresh(latest.refreshToken);
    } catch (err) {
      if (isSkyError(err) && err.code === 'upstream_revoked' && latest.answerLost) {
        // Refused because the provider rotated its token in an answer sky never saw, not because the
        // user removed the app: nobody is revoked, but this grant cannot be refreshed any more.
        const { refreshToken: _spent, answerLost: _lost, ...rest } = latest;
        await this.saveUpstream(sub, { ...rest, expiresAt: 0 });
        this.options.log.warn(
          { sub },
          'an upstream refresh answer was lost earlier: the user must log in again',
        );
        throw invalidGrant('the upstream grant was lost in an interrupted refresh: log in again', err);
      }
      if (isSkyError(err) && err.code === 'upstream_revoked') {
        await this.revokeUser(sub, 'the upstream refresh was refused (the user removed the app)');
        throw invalidGrant('the upstream grant was revoked: every session of this user is revoked', err);
      }
      if (isSkyError(err) && (err.code === 'upstream_timeout' || err.code === 'upstream_unavailable')) {
        // The provider may have rotated its refresh token in the answer that never arrived.
        await this.saveUpstream(sub, { ...latest, answerLost: true });
      }
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

  private hash(refreshToken: string): string {
    return createHmac('sha256', this.hmacKey).update(refreshToken).digest('base64url');
  }
}
