export {
  deriveSecret,
  generateSigningKey,
  jwks,
  loadSigningKey,
  loadVerifyingKey,
  openingKeys,
  thumbprint,
  type PublicJwk,
  type SigningKey,
  type VerifyingKey,
} from './keys';
export { issueToken, TokenVerifier, type IssueInput, type SkyClaims, type VerifierOptions } from './jwt';
export {
  AUTH_COOKIE,
  CSRF_COOKIE,
  authCookies,
  clearAuthCookies,
  parseCookies,
  serializeCookie,
  tokenFromAuthorization,
  tokenFromCookieHeader,
  tokenFromCookies,
  type CookieAttributes,
} from './cookies';
export { csrfMatches } from './csrf';
export { Revocations } from './revocations';
