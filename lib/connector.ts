/**
 * The interface between sky and an identity provider (a connector, as dex and Concourse call it). Each
 * connector is a folder of its own (lib/bitbucket, lib/local) implementing `ConnectorModule`, listed once
 * in lib/connectors.ts; http/, teams/, tokens/, config/ and cli/ iterate that list and name no connector.
 */
import type { Strategy } from 'passport';
import type { z } from 'zod';
import type { DexConnectorSource, DexDocument, EnvSource, SourcedFields } from './config/sources';
import type { SkyErrorCode } from './errors';
import type { Metrics } from './health/metrics';
import type { Logger } from './log';

/** Who a person is, as the connector established it at login or refresh (SPEC §5.2). */
export interface Identity {
  /** Connector id, e.g. "bitbucket-cloud". */
  connector: string;
  /** Stable upstream id (Bitbucket: the braced uuid, lower-cased; local users: the name). */
  userId: string;
  /** Bitbucket account_id (local users: the name). */
  accountId: string;
  /** Login name when the provider gives one (Bitbucket `username`, deprecated, may be absent). */
  userName?: string;
  /** Display name. */
  name: string;
  /** Confirmed email only; absent when none is confirmed. */
  email?: string;
  /** Group names as they appear in team configs without the connector prefix: "acme", "acme/devs", "acme:owner". */
  groups: string[];
}

/** Tokens of the upstream provider, as sky keeps them (encrypted) for refresh. */
export interface UpstreamTokens {
  accessToken: string;
  refreshToken?: string;
  /** Epoch milliseconds when the access token expires. */
  expiresAt: number;
  scopes: string[];
}

/** What a login strategy hands sky: the person, and the upstream tokens when the provider has any. */
export interface LoggedIn {
  identity: Identity;
  upstream?: UpstreamTokens;
}

/** A state store's answer: the PKCE verifier (false: refused) and what the login carries (or why it was refused). */
export type PkceVerified = (err: Error | null, verifier: string | false, state?: unknown) => void;

/** The PKCE form of passport-oauth2's state store: where `state` and the verifier wait between the two legs. */
export interface PkceStateStore {
  store(
    req: import('express').Request,
    verifier: string,
    state: unknown,
    meta: unknown,
    callback: (err: Error | null, handle?: string) => void,
  ): void;
  verify(req: import('express').Request, handle: string, callback: PkceVerified): void;
}

/** What a person reads on an error page: what happened (the title) and what to do next (the hint). */
export interface PageText {
  title: string;
  hint: string;
}

/** What sky gives a connector to build its runtime part from. */
export interface ConnectorDeps {
  log: Logger;
  /** Where the connector counts its upstream calls (`metrics.upstream(...)`). */
  metrics: Metrics;
  /** The login callback's absolute URL (redirecting connectors). */
  callbackURL: string;
  loginStates: PkceStateStore;
}

/**
 * A repeatable set-team flag: `--<name> <VALUE>`. The same entries of team `main` come from the
 * variable CONCOURSE_MAIN_TEAM_<NAME> (Concourse's rule: `--local-user` is CONCOURSE_MAIN_TEAM_LOCAL_USER)
 * and from sky()'s `mainTeam.<mainTeam>` option.
 */
export interface CliFlag {
  name: string;
  value: string;
  description: string;
  /** The key of sky()'s `mainTeam` option for these entries (`users`, `groups`, `localUsers`). */
  mainTeam: string;
}

/**
 * How a connector's entries appear in team configs (SPEC §6): the API's `users`/`groups` under its
 * prefix (`<id>:<entry>`), the CLI's set-team flags, and the roles YAML key with its users/groups keys.
 */
export interface ConnectorEntries {
  /** The roles YAML key under a role (`bitbucket-cloud`, `local`). */
  yamlKey: string;
  /** That mapping's key for groups (Concourse's `teams`); absent: the connector has no groups. */
  yamlGroups?: string;
  /** set-team's flag for a user (`bitbucket-cloud-user`), and for a group when it has groups. */
  userFlag: CliFlag;
  groupFlag?: CliFlag;
  /** The kind of a user entry (without the prefix), decided by its form; an identity matches by kind. */
  userKind: (bare: string) => string;
  /** Why an entry written through the API or CLI is not valid for this connector (null: it is). */
  check: (bare: string, where: string) => string | null;
  /** The ids a person is matched by, each with its kind (never a name anyone can choose). */
  userIds: (identity: Identity) => [kind: string, id: string][];
}

/** The connector's working part, built from sky's config (null from `create`: not configured). */
export interface ConnectorRuntime {
  /**
   * The Passport strategy that logs a person in (its name is the connector id): the one seam of the
   * login flow. Its verify callback ends with `done(null, LoggedIn)`.
   */
  strategy: Strategy;
  /** What the login page calls it, when the config names it (dex's `name`). */
  displayName?: string;
  /** Checks a username and password (the token endpoint's `grant_type=password`); password connectors only. */
  password?: (username: string, password: string, client: string) => Promise<Identity>;
  /**
   * The configured user a typed name is (normalised), or null: lets the audit trail name the user of a
   * failed password without writing down a mistyped name, which may be a password. Password connectors.
   */
  configuredUser?: (typed: string) => string | null;
  /** Redeems the upstream refresh token; providers that rotate return the new one. */
  refresh?: (refreshToken: string) => Promise<UpstreamTokens>;
  /** Who the access token's owner is now, with their current groups. */
  identity?: (accessToken: string) => Promise<Identity>;
  /** Who the person is now, for a connector without upstream tokens (a local user still configured). */
  revalidate?: (userId: string) => Promise<Identity>;
  /** One upstream call's timeout and retries (bounds how long a refresh may wait on another node). */
  upstream?: { timeoutMs: number; retries: number };
  /** Start-up warnings (plain-text passwords, say), logged once. */
  warnings?: string[];
}

/**
 * A connector's settings (SPEC §3): its part of sky()'s options schema, and how the environment and a
 * dex YAML map onto it. config/ merges the sources field by field (env < YAML < options) and hands the
 * result to `resolve`; the resolved settings are `Config[key]` (null: the connector is off).
 */
export interface ConnectorSettings<
  Key extends string = string,
  Schema extends z.ZodType = z.ZodType,
  Fields extends SourcedFields = SourcedFields,
  Resolved = unknown,
> {
  /** sky()'s option with these settings, and the field of the resolved Config that holds them. */
  readonly key: Key;
  /**
   * The option's shape, its part of sky's one options schema. Nothing in it is required: what code
   * leaves unset comes from the environment or the YAML, and `resolve` checks the merged whole.
   */
  readonly schema: Schema;
  /** How to turn the connector on, for the message of a node that has none. */
  readonly howToEnable: string;
  /** The option's value, field by field, each sourced `option <key>…`. */
  fromOption(value: z.input<Schema>): Fields;
  /** Concourse's variables. */
  fromEnv(env: EnvSource): Fields;
  /** dex YAML: an entry of `connectors:` of this `type`, and settings dex keeps elsewhere in the file. */
  readonly dex?: {
    readonly type?: string;
    fromConnector?(entry: DexConnectorSource): Fields;
    fromDocument?(doc: DexDocument): Fields;
  };
  /** The merged fields checked, defaults applied; problems name their source. null: not configured. */
  resolve(fields: Fields, problems: string[]): Resolved | null;
}

export interface ConnectorModule<
  Key extends string = string,
  Schema extends z.ZodType = z.ZodType,
  Fields extends SourcedFields = SourcedFields,
  Resolved = unknown,
> {
  /** Connector id: the prefix of its team config entries and of its subjects ("bitbucket-cloud"). */
  readonly id: string;
  /** What the login page calls it ("Bitbucket Cloud"). */
  readonly displayName: string;
  /** 'redirect': a button that sends the browser to the provider; 'password': a form posted to sky. */
  readonly login: 'redirect' | 'password';
  readonly entries: ConnectorEntries;
  /** What its groups are called in messages ("Bitbucket Cloud workspaces and groups"); connectors with groups. */
  readonly groupsName?: string;
  /**
   * Error pages in the connector's words for the codes its login raises (its upstream's failures, a
   * refused consent); every other code, and a connector without them, keeps sky's own text.
   */
  readonly pageText?: Partial<Record<SkyErrorCode, PageText>>;
  readonly settings: ConnectorSettings<Key, Schema, Fields, Resolved>;
  /** The runtime part, from the connector's resolved settings (called only when they are not null). */
  create(deps: ConnectorDeps, settings: Resolved): ConnectorRuntime;
}

/** The module type of a connector with these settings (its option key, schema, fields and resolved form). */
export type ConnectorModuleOf<S> =
  S extends ConnectorSettings<infer Key, infer Schema, infer Fields, infer Resolved>
    ? ConnectorModule<Key, Schema, Fields, Resolved>
    : never;

/** A connector of a running sky: its module and its runtime part. */
export type Connector = ConnectorModule & ConnectorRuntime;
