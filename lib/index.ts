/** sky's public API (SPEC §1): the router, the guards, the strategy, the stores, the errors, the types. */
export { sky, type SkyRouter, type SkyRouterOptions } from './http/router';
export { landing } from './http/landing';
export { requiresAuth, requiresTeamRole, requiresAdmin, type TeamRoleOptions } from './http/guards';
export { claimsOf } from './http/context';
export { errorHandler, notFound } from './http/errors';
export { BitbucketStrategy, BitbucketClient, fetchIdentity, BITBUCKET_CLOUD } from './bitbucket';
export { resolveConfig, type SkyOptions } from './config';
export type { Config } from './config/types';
export { createStore, createMemoryStore, createRedisStore, type Store } from './store';
export { SkyError, isSkyError, type SkyErrorCode } from './errors';
export type { Identity, UpstreamTokens } from './connector';
export { ROLES, type Role, type TeamAuth } from './teams/auth';
export type { SkyClaims } from './tokens';
export { createLogger, type Logger } from './log';
