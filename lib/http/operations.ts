import type { RequestHandler } from 'express';
import { VERSION } from '../version';
import type { SkyContext } from './context';

/**
 * GET /api/v1/info (SPEC §12), Concourse's shape: what `fly` and `sky login` ask a URL first, to learn
 * that a CI server answers there. No authentication, nothing secret.
 */
export function info(ctx: SkyContext): RequestHandler {
  const body = {
    version: VERSION,
    external_url: ctx.config.externalUrl,
    cluster_name: ctx.config.clusterName,
  };
  return (_req, res) => {
    res.set('Cache-Control', 'no-store').json(body);
  };
}

/**
 * The OpenID discovery document at the token issuer (`iss` + /.well-known/openid-configuration), so other
 * services verify sky's tokens with a standard library: the issuer, the JWKS, the endpoints, what sky signs
 * with. The authorization endpoint is sky's browser login (it takes no client_id: sky issues for itself).
 */
export function discovery(ctx: SkyContext): RequestHandler {
  const issuer = ctx.config.externalUrl;
  const grants = ['authorization_code', 'refresh_token'];
  if (ctx.connectors.some((c) => c.password)) grants.push('password');
  const body = {
    issuer,
    authorization_endpoint: `${issuer}/sky/login`,
    token_endpoint: `${issuer}/sky/token`,
    jwks_uri: `${issuer}/sky/issuer/keys`,
    userinfo_endpoint: `${issuer}/api/v1/user`,
    end_session_endpoint: `${issuer}/sky/logout`,
    response_types_supported: ['code'],
    grant_types_supported: grants,
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    token_endpoint_auth_methods_supported: ['none'],
    code_challenge_methods_supported: ['S256'],
    claims_supported: [
      'iss',
      'aud',
      'sub',
      'iat',
      'exp',
      'jti',
      'user_id',
      'account_id',
      'user_name',
      'name',
      'email',
      'connector',
      'groups',
      'teams',
      'is_admin',
    ],
  };
  return (_req, res) => {
    res.set('Cache-Control', 'public, max-age=300').json(body);
  };
}
