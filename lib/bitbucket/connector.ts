import type { BitbucketCloudConfig } from '../config/types';
import type { Connector } from '../connector';
import type { BitbucketClient } from './client';
import { BITBUCKET_CLOUD, fetchIdentity } from './identity';

/** Bitbucket Cloud behind sky's Connector interface: rotating refresh, identity with groups. */
export function bitbucketConnector(config: BitbucketCloudConfig, client: BitbucketClient): Connector {
  return {
    id: BITBUCKET_CLOUD,
    refresh: (refreshToken) => client.refresh(refreshToken),
    identity: (accessToken) => fetchIdentity(client, config, accessToken),
  };
}
