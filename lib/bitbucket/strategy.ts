import type { Request } from 'express';
import { Strategy as OAuth2Strategy, type StateStore, type VerifyFunctionWithRequest } from 'passport-oauth2';
import type { BitbucketCloudConfig } from '../config/types';
import type { Identity, PkceStateStore, UpstreamTokens } from '../connector';
import { isSkyError } from '../errors';
import { BitbucketClient } from './client';
import { BITBUCKET_CLOUD, fetchIdentity } from './identity';

export { BITBUCKET_CLOUD };

export type VerifyIdentity = (
  req: Request,
  tokens: UpstreamTokens,
  identity: Identity,
  done: (err: unknown, user?: Express.User | false, info?: unknown) => void,
) => void;

export interface BitbucketStrategyOptions {
  config: BitbucketCloudConfig;
  callbackURL: string;
  /** Where `state` and the PKCE verifier live between the two legs of the login. */
  store: PkceStateStore;
  client?: BitbucketClient;
}

export type { PkceStateStore };

type TokenCallback = (err: unknown, accessToken?: string, refreshToken?: string, params?: unknown) => void;

/**
 * Bitbucket Cloud login as a Passport strategy, passport-oauth2 underneath (usable on its own). The token
 * exchange and the profile go through BitbucketClient, so both get timeouts, retries and clear errors.
 */
export class BitbucketStrategy extends OAuth2Strategy {
  readonly client: BitbucketClient;

  constructor(options: BitbucketStrategyOptions, verify: VerifyIdentity) {
    const { config } = options;
    const client = options.client ?? new BitbucketClient(config);
    super(
      {
        authorizationURL: `${config.webUrl}/site/oauth2/authorize`,
        tokenURL: `${config.webUrl}/site/oauth2/access_token`,
        clientID: config.clientId,
        clientSecret: config.clientSecret,
        callbackURL: options.callbackURL,
        scope: 'account email',
        scopeSeparator: ' ',
        pkce: true,
        state: true,
        store: options.store as unknown as StateStore,
        passReqToCallback: true,
      },
      // Six parameters on purpose: passport-oauth2 passes the token params only to a 6-arity verify.
      ((
        req: Request,
        _access: string,
        _refresh: string,
        params: { tokens: UpstreamTokens },
        profile: Identity,
        done: Parameters<VerifyIdentity>[3],
      ) => verify(req, params.tokens, profile, done)) as unknown as VerifyFunctionWithRequest,
    );
    this.name = BITBUCKET_CLOUD;
    this.client = client;
    const oauth2 = this._oauth2 as unknown as {
      getOAuthAccessToken: (code: string, params: Record<string, string>, cb: TokenCallback) => void;
    };
    oauth2.getOAuthAccessToken = (code, params, cb) => {
      client.exchangeCode(code, params['redirect_uri'] ?? options.callbackURL, params['code_verifier']).then(
        (tokens) => cb(null, tokens.accessToken, tokens.refreshToken ?? '', { tokens }),
        (err: unknown) => cb(err),
      );
    };
    this.userProfile = (accessToken: string, done: (err?: unknown, profile?: unknown) => void) => {
      fetchIdentity(client, config, accessToken).then(
        (identity) => done(null, identity),
        (err: unknown) => done(err),
      );
    };
  }

  /** Our errors reach Express unchanged (passport-oauth2 would wrap them in InternalOAuthError). */
  protected _createOAuthError(message: string, err: unknown): Error {
    if (isSkyError(err)) return err;
    return new Error(message, { cause: err });
  }
}
