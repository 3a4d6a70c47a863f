export {
  BitbucketClient,
  type BitbucketEmail,
  type BitbucketGroup,
  type BitbucketUser,
  type BitbucketWorkspaceAccess,
  type WorkspacePermission,
} from './client';
export { BITBUCKET_CLOUD, confirmedEmail, fetchIdentity } from './identity';
export { BitbucketStrategy, type BitbucketStrategyOptions, type VerifyIdentity } from './strategy';
export { bitbucketCloud, bitbucketUserKind } from './connector';
