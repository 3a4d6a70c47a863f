import type { ConnectorModule, ConnectorModuleOf, Identity } from '../connector';
import { BitbucketClient } from './client';
import { BITBUCKET_CLOUD, fetchIdentity } from './identity';
import { bitbucketSettings } from './settings';
import { BitbucketStrategy } from './strategy';

/** Printable ASCII: what Bitbucket usernames, account ids, uuids and workspace slugs are made of. */
const ASCII_ENTRY = /^[\x21-\x7e]*$/;

/**
 * The kind of a user entry, decided by its form (the same rule for configs saved before kinds
 * existed): `{…}` is a uuid, an Atlassian account id (24 hex digits, or `<digits>:<id>`) is an account
 * id, anything else a username. An identity matches an entry only by the same kind, so a username that
 * looks like someone's account id or uuid grants nothing.
 */
export function bitbucketUserKind(bare: string): 'uuid' | 'account id' | 'username' {
  if (/^\{[^{}]+\}$/.test(bare)) return 'uuid';
  if (/^[0-9a-f]{24}$/.test(bare) || /^\d+:[0-9a-f-]+$/.test(bare)) return 'account id';
  return 'username';
}

/** Error pages in Bitbucket's words for what its login raises (sky's own text for every other code). */
const PAGE_TEXT: ConnectorModule['pageText'] = {
  access_denied: {
    title: 'Access was not granted',
    hint: 'You are not logged in. To use this CI server, log in again and choose "Grant access" when Bitbucket Cloud asks.',
  },
  not_in_allowed_teams: {
    title: 'Your Bitbucket workspaces are not allowed here',
    hint: 'Ask the operator of this CI server which Bitbucket workspace grants access, join it, then log in again.',
  },
  upstream_error: {
    title: 'Bitbucket Cloud answered with an error',
    hint: 'This is usually temporary. Wait a minute, then log in again; if it keeps happening, give your administrator the reference below.',
  },
  upstream_unavailable: {
    title: 'Bitbucket Cloud cannot be reached',
    hint: 'Bitbucket Cloud may be down (see bitbucket.status.atlassian.com) or unreachable from this CI server. Log in again in a few minutes.',
  },
  upstream_timeout: {
    title: 'Bitbucket Cloud did not answer in time',
    hint: 'Bitbucket Cloud is slow right now. Wait a minute, then log in again.',
  },
  upstream_rate_limited: {
    title: 'Bitbucket Cloud is limiting requests',
    hint: 'Too many requests reached Bitbucket Cloud. Wait a few minutes, then log in again.',
  },
  upstream_revoked: {
    title: 'Bitbucket Cloud refused the grant',
    hint: 'The access you granted was withdrawn, for example by removing the app from your Bitbucket account. Log in again to grant it anew.',
  },
  upstream_forbidden: {
    title: 'Bitbucket Cloud refused a request',
    hint: 'Bitbucket Cloud would not let this CI server read your account. Log in again; if it keeps happening, give your administrator the reference below.',
  },
  upstream_gone: {
    title: 'Bitbucket Cloud no longer offers what this CI server asked for',
    hint: 'Part of the Bitbucket Cloud API this server uses is gone. Tell the operator of this CI server and give them the reference below.',
  },
};

/**
 * Bitbucket Cloud (SPEC §5): OAuth 2.0 through passport-oauth2, identity by uuid, account id and
 * username, groups from workspaces, rotating upstream refresh.
 */
export const bitbucketCloud: ConnectorModuleOf<typeof bitbucketSettings> = {
  id: BITBUCKET_CLOUD,
  displayName: 'Bitbucket Cloud',
  login: 'redirect',
  groupsName: 'Bitbucket Cloud workspaces and groups',
  pageText: PAGE_TEXT,
  settings: bitbucketSettings,
  entries: {
    yamlKey: BITBUCKET_CLOUD,
    yamlGroups: 'teams',
    userFlag: {
      name: 'bitbucket-cloud-user',
      value: 'USERNAME',
      description: 'A Bitbucket Cloud user (username, account id or {uuid}) to make an owner; repeatable',
      mainTeam: 'users',
    },
    groupFlag: {
      name: 'bitbucket-cloud-team',
      value: 'WORKSPACE',
      description: 'A Bitbucket Cloud workspace (or workspace/group) to make an owner; repeatable',
      mainTeam: 'groups',
    },
    userKind: bitbucketUserKind,
    check: (bare, where) =>
      ASCII_ENTRY.test(bare)
        ? null
        : `${where} entry '${bare.slice(0, 80)}' has non-ASCII characters or spaces: Bitbucket usernames, ids and workspaces are ASCII`,
    userIds: (identity: Identity) => [
      ['uuid', identity.userId],
      ['account id', identity.accountId],
      ...(identity.userName ? [['username', identity.userName] as [string, string]] : []),
    ],
  },
  create({ log, metrics, callbackURL, loginStates }, bitbucket) {
    const client = new BitbucketClient(bitbucket, {
      log,
      observe: (endpoint, status, seconds) => metrics.upstream(BITBUCKET_CLOUD, endpoint, status, seconds),
    });
    return {
      displayName: bitbucket.name,
      strategy: new BitbucketStrategy(
        { config: bitbucket, callbackURL, store: loginStates, client },
        (_req, upstream, identity, done) => done(null, { identity, upstream }),
      ),
      upstream: { timeoutMs: bitbucket.timeoutMs, retries: bitbucket.retries },
      refresh: (refreshToken) => client.refresh(refreshToken),
      identity: (accessToken) => fetchIdentity(client, bitbucket, accessToken),
    };
  },
};
