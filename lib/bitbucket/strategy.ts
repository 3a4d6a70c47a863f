import http from 'node:http';
import https from 'node:https';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Request } from 'express';
import {
  InternalOAuthError,
  Strategy as OAuth2Strategy,
  type StateStore,
  type VerifyCallback,
} from 'passport-oauth2';
import type { BitbucketCloudConfig } from './settings';
import type { Identity, PkceStateStore, PkceVerified, UpstreamTokens } from '../connector';
import { isSkyError, SkyError } from '../errors';
import {
  BitbucketClient,
  clientBasic,
  endpointOf,
  MAX_BODY_BYTES,
  oauthUrls,
  SCOPE,
  tokenAnswer,
  tokenRefusal,
} from './client';
import { BITBUCKET_CLOUD, fetchIdentity } from './identity';

export { BITBUCKET_CLOUD };

export type VerifyIdentity = (
  req: Request,
  tokens: UpstreamTokens,
  identity: Identity,
  done: VerifyCallback,
) => void;

export interface BitbucketStrategyOptions {
  config: BitbucketCloudConfig;
  callbackURL: string;
  /** Where `state` and the PKCE verifier live between the two legs of the login. */
  store: PkceStateStore;
  client?: BitbucketClient;
}

export type { PkceStateStore };

const TOKEN_REQUEST = 'the token request';

const isStoreCallback = (v: unknown): v is (err: Error | null, handle?: string) => void =>
  typeof v === 'function';
const isVerifyCallback = (v: unknown): v is PkceVerified => typeof v === 'function';

/**
 * sky's PKCE state store in the shape @types/passport-oauth2 describes. passport-oauth2 with `pkce: true`
 * calls `store(req, verifier, state, meta, callback)` and `verify(req, handle, callback)`, where the
 * callback's second argument is the verifier; the types list only the older forms. The arguments are
 * read and checked here at run time, so no cast stands at the seam.
 */
function pkceStore(states: PkceStateStore): StateStore {
  // passport-oauth2 picks the form by arity: five parameters for `store`, three for `verify`.
  return {
    store(req: Request, verifier: unknown, state?: unknown, meta?: unknown, callback?: unknown): void {
      if (typeof verifier !== 'string' || !isStoreCallback(callback))
        throw new TypeError('passport-oauth2 called the login state store without a PKCE verifier');
      states.store(req, verifier, state, meta, callback);
    },
    verify(req: Request, handle: string, callback: unknown): void {
      if (!isVerifyCallback(callback))
        throw new TypeError('passport-oauth2 called the login state store without a callback');
      states.verify(req, handle, callback);
    },
  };
}

/**
 * The token request's socket gets the client's bounds: `timeoutMs` for connecting and for every wait
 * for bytes, and at most MAX_BODY_BYTES read. A socket past either is destroyed with the SkyError,
 * which node-oauth hands to passport-oauth2 as the request's error (node-oauth itself has no timeout).
 */
function bound(socket: Duplex | null | undefined, timeoutMs: number): void {
  if (!(socket instanceof Socket)) return;
  socket.setTimeout(timeoutMs, () =>
    socket.destroy(
      new SkyError(
        'upstream_timeout',
        `Bitbucket Cloud did not answer within ${timeoutMs} ms (${TOKEN_REQUEST})`,
      ),
    ),
  );
  let size = 0;
  socket.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES)
      socket.destroy(
        new SkyError(
          'upstream_error',
          `Bitbucket Cloud sent more than ${MAX_BODY_BYTES} bytes for ${TOKEN_REQUEST}`,
        ),
      );
  });
}

class BoundedHttpsAgent extends https.Agent {
  constructor(private readonly timeoutMs: number) {
    super({ keepAlive: false });
  }
  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    bound(socket, this.timeoutMs);
    return socket;
  }
}

/** For a web URL configured as http:// (the bundled fake Bitbucket, a test double). */
class BoundedHttpAgent extends http.Agent {
  constructor(private readonly timeoutMs: number) {
    super({ keepAlive: false });
  }
  override createConnection(
    options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    bound(socket, this.timeoutMs);
    return socket;
  }
}

function parsed(body: unknown): unknown {
  if (typeof body !== 'string') return body;
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return null;
  }
}

/**
 * sky's error for what passport-oauth2 reports: its InternalOAuthError wraps node-oauth's failure (a
 * socket error, or a status with an empty body), and a 200 without an access token is a bare Error.
 */
function upstreamFailure(err: unknown): unknown {
  if (isSkyError(err)) return err;
  if (err instanceof InternalOAuthError) {
    const cause: unknown = err.oauthError;
    if (isSkyError(cause)) return cause;
    if (
      typeof cause === 'object' &&
      cause !== null &&
      'statusCode' in cause &&
      typeof cause.statusCode === 'number'
    )
      return tokenRefusal(cause.statusCode, parsed('data' in cause ? cause.data : null), 'invalid_grant');
    return new SkyError('upstream_unavailable', `Bitbucket Cloud cannot be reached (${TOKEN_REQUEST})`, {
      cause,
    });
  }
  if (err instanceof Error && err.message === 'Failed to obtain access token')
    return new SkyError(
      'upstream_error',
      `Bitbucket Cloud answered ${TOKEN_REQUEST} without an access token`,
    );
  return err;
}

/**
 * A failed code exchange as the metrics count it: the HTTP status, `timeout`, `unreachable` or
 * `unreadable`; null for an error that is not the exchange's (passport-oauth2 wraps only those).
 */
function exchangeStatus(err: unknown): string | null {
  // passport-oauth2's error for a 200 without an access token (InternalOAuthError has the same message).
  if (!(err instanceof InternalOAuthError))
    return err instanceof Error && err.message === 'Failed to obtain access token' ? 'unreadable' : null;
  const cause: unknown = err.oauthError;
  if (
    typeof cause === 'object' &&
    cause !== null &&
    'statusCode' in cause &&
    typeof cause.statusCode === 'number'
  )
    return String(cause.statusCode);
  if (isSkyError(cause)) return cause.code === 'upstream_timeout' ? 'timeout' : 'unreadable';
  return 'unreachable';
}

/**
 * Bitbucket Cloud login as a Passport strategy: passport-oauth2 through its public options and methods.
 * HTTP Basic client authentication is a custom header; the token request's sockets are bounded by the
 * client's timeout and body cap (an agent); refusals become sky's errors in `parseErrorResponse`; the
 * profile is `userProfile` (BitbucketClient, with its timeouts and retries). Usable on its own.
 *
 * The code exchange is one attempt: a code is single-use, and a lost answer cannot be told from a
 * consumed code. A failed exchange ends that login with its error page; logging in again starts over.
 */
export class BitbucketStrategy extends OAuth2Strategy {
  readonly client: BitbucketClient;
  private readonly config: BitbucketCloudConfig;
  /** The token endpoint as the metrics name it (`/site/oauth2/access_token`). */
  private readonly tokenEndpoint: string;

  constructor(options: BitbucketStrategyOptions, verify: VerifyIdentity) {
    const { config } = options;
    const urls = oauthUrls(config);
    super(
      {
        authorizationURL: urls.authorize,
        tokenURL: urls.token,
        clientID: config.clientId,
        clientSecret: config.clientSecret,
        customHeaders: { Authorization: clientBasic(config), Accept: 'application/json' },
        callbackURL: options.callbackURL,
        scope: SCOPE,
        scopeSeparator: ' ',
        pkce: true,
        state: true,
        store: pkceStore(options.store),
        passReqToCallback: true,
      },
      // Six parameters on purpose: passport-oauth2 passes the token answer only to a 6-arity verify.
      (
        req: Request,
        accessToken: string,
        refreshToken: string,
        answer: Record<string, unknown>,
        identity: Identity,
        done: VerifyCallback,
      ) => {
        let tokens: UpstreamTokens;
        try {
          tokens = tokenAnswer({ ...answer, access_token: accessToken, refresh_token: refreshToken });
        } catch (err) {
          done(err);
          return;
        }
        verify(req, tokens, identity, done);
      },
    );
    this.name = BITBUCKET_CLOUD;
    this.config = config;
    this.tokenEndpoint = endpointOf(urls.token);
    this.client = options.client ?? new BitbucketClient(config);
    this._oauth2.setAgent(
      urls.token.startsWith('https:')
        ? new BoundedHttpsAgent(config.timeoutMs)
        : new BoundedHttpAgent(config.timeoutMs),
    );
  }

  /**
   * Every error this strategy reports reaches Express as sky's own error (SkyError), never wrapped. On
   * the callback leg the code exchange is timed for the metrics: it ends in `userProfile` (answered),
   * `parseErrorResponse` (refused, with its status) or the error action (timeout, unreachable).
   * passport calls this on an object of the request's own (`Object.create(strategy)`), so what is set
   * on `this` here belongs to this request.
   */
  override authenticate(req: Request, options?: object): void {
    const error = this.error.bind(this);
    this.error = (err: Error) => {
      this.exchanged(exchangeStatus(err));
      error(upstreamFailure(err));
    };
    if (typeof req.query['code'] === 'string') this.exchange = { started: performance.now() };
    super.authenticate(req, options);
  }

  /** The code exchange of this request, while it runs (the callback leg only). */
  private exchange?: { started: number; status?: string };

  private exchanged(status: string | null): void {
    const exchange = this.exchange;
    if (!exchange) return;
    const answered = exchange.status ?? status;
    if (answered === null) return;
    delete this.exchange;
    const seconds = (performance.now() - exchange.started) / 1000;
    this.client.observe?.(this.tokenEndpoint, answered, seconds);
  }

  override userProfile(accessToken: string, done: (err?: unknown, profile?: Identity) => void): void {
    this.exchanged('200');
    fetchIdentity(this.client, this.config, accessToken).then(
      (identity) => done(null, identity),
      (err: unknown) => done(err),
    );
  }

  /** A refused code exchange (a status other than 2xx, with a body). */
  override parseErrorResponse(body: unknown, status: number): Error {
    if (this.exchange) this.exchange.status = String(status);
    return tokenRefusal(status, parsed(body), 'invalid_grant');
  }
}
