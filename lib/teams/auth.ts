import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { Identity } from '../connector';
import { SkyError } from '../errors';

/** Roles, highest first (SPEC §6.1). */
export const ROLES = ['owner', 'member', 'pipeline-operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export interface RoleMembers {
  users: string[];
  groups: string[];
}
/** A team's auth config, Concourse's shape: role → users and groups, entries prefixed and lower-cased. */
export type TeamAuth = Partial<Record<Role, RoleMembers>>;

/** The one role table (Concourse's accessor): what holding each role allows. */
export const ROLE_INCLUDES: Record<Role, readonly Role[]> = {
  owner: ['owner', 'member', 'pipeline-operator', 'viewer'],
  member: ['member', 'pipeline-operator', 'viewer'],
  'pipeline-operator': ['pipeline-operator', 'viewer'],
  viewer: ['viewer'],
};

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export function roleIncludes(held: Role, required: Role): boolean {
  return ROLE_INCLUDES[held].includes(required);
}

const TEAM_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Team names: lowercase letters, digits, '-', '_', '.', starting with a letter or digit (SPEC §6.1). */
export function validateTeamName(name: unknown): string {
  if (typeof name !== 'string' || !TEAM_NAME.test(name)) {
    // String() throws on an object without a usable toString (a null prototype): name its type instead.
    const shown =
      typeof name === 'string'
        ? name.slice(0, 80)
        : typeof name === 'object' && name !== null
          ? typeof name
          : String(name);
    throw new SkyError(
      'invalid_team',
      `invalid team name '${shown}': use 1-64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit`,
    );
  }
  return name;
}

const MAX_ENTRIES = 1000;
const MAX_ENTRY_LENGTH = 256;
const EMPTY = 'auth config for the team must not be empty';
const NO_MEMBERS = 'auth config for the team does not have users and groups configured';

const invalid = (message: string): SkyError => new SkyError('invalid_team', message);

/** Lower-cases A-Z only: a Unicode fold would make the Kelvin sign (U+212A) match `k`. */
export function asciiLower(value: string): string {
  return value.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

/** Printable ASCII: what Bitbucket usernames, account ids, uuids and workspace slugs are made of. */
const ASCII_ENTRY = /^[\x21-\x7e]*$/;

/**
 * The kind of a user entry, decided by its form (the same rule for configs saved before kinds
 * existed): `{…}` is a uuid, an Atlassian account id (24 hex digits, or `<digits>:<id>`) is an account
 * id, anything else a username. An identity matches an entry only by the same kind, so a username that
 * looks like someone's account id or uuid grants nothing.
 */
export type UserEntryKind = 'uuid' | 'account id' | 'username';

export function userEntryKind(bare: string): UserEntryKind {
  if (/^\{[^{}]+\}$/.test(bare)) return 'uuid';
  if (/^[0-9a-f]{24}$/.test(bare) || /^\d+:[0-9a-f-]+$/.test(bare)) return 'account id';
  return 'username';
}

interface EntryRules {
  /** Refuse non-ASCII entries (writes); stored configs are read as they are. */
  strict: boolean;
}

function normaliseEntries(value: unknown, where: string, connector: string, rules: EntryRules): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(`${where} must be a list of strings`);
  if (value.length > MAX_ENTRIES) throw invalid(`${where} has more than ${MAX_ENTRIES} entries`);
  const prefix = `${connector}:`;
  const entries = new Set<string>();
  for (const raw of value) {
    if (typeof raw !== 'string') throw invalid(`${where} must be a list of strings`);
    const entry = asciiLower(raw.trim());
    if (entry === '' || entry === prefix) throw invalid(`${where} contains an empty entry`);
    // The limit is on the entry without its prefix, so a stored (prefixed) config validates again on read.
    const bare = entry.startsWith(prefix) ? entry.slice(prefix.length) : entry;
    if (bare.length > MAX_ENTRY_LENGTH)
      throw invalid(`${where} has an entry longer than ${MAX_ENTRY_LENGTH} characters`);
    if (rules.strict && !ASCII_ENTRY.test(bare)) {
      throw invalid(
        `${where} entry '${bare.slice(0, 80)}' has non-ASCII characters or spaces: Bitbucket usernames, ids and workspaces are ASCII`,
      );
    }
    entries.add(entry.startsWith(prefix) ? entry : prefix + entry);
  }
  return [...entries];
}

/**
 * Validates and normalises a Concourse auth config with Concourse's messages. Entries are trimmed,
 * lower-cased (ASCII), deduplicated and given the connector prefix when it is missing; a non-ASCII
 * entry is refused, except in a config read back from the store (`stored`), which is taken as saved.
 */
export function parseTeamAuth(
  raw: unknown,
  connector = 'bitbucket-cloud',
  { stored = false }: { stored?: boolean } = {},
): TeamAuth {
  const rules: EntryRules = { strict: !stored };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(EMPTY);
  const roles = Object.keys(raw);
  if (roles.length === 0) throw invalid(EMPTY);
  const auth: TeamAuth = {};
  for (const role of roles) {
    if (!isRole(role)) throw invalid(`unknown role '${role.slice(0, 40)}' (roles: ${ROLES.join(', ')})`);
    const members: unknown = (raw as Record<string, unknown>)[role];
    if (typeof members !== 'object' || members === null || Array.isArray(members)) throw invalid(NO_MEMBERS);
    const m = members as Record<string, unknown>;
    for (const key of Object.keys(m)) {
      if (key !== 'users' && key !== 'groups')
        throw invalid(`role '${role}' has an unknown key '${key.slice(0, 40)}' (use users, groups)`);
    }
    const users = normaliseEntries(m['users'], `${role}.users`, connector, rules);
    const groups = normaliseEntries(m['groups'], `${role}.groups`, connector, rules);
    if (users.length === 0 && groups.length === 0) throw invalid(NO_MEMBERS);
    auth[role] = { users, groups };
  }
  return auth;
}

/** fly set-team --config (SPEC §6.2): `roles: [{name, bitbucket-cloud: {users, teams}}]`. */
export function parseRolesYaml(text: string, connector = 'bitbucket-cloud'): TeamAuth {
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 50 });
  } catch (err) {
    const detail = err instanceof YAMLParseError ? err.message.split('\n')[0] : String(err);
    throw invalid(`invalid roles YAML: ${detail}`);
  }
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as Record<string, unknown>)['roles'])) {
    throw invalid(EMPTY);
  }
  const config: Record<string, { users: unknown; groups: unknown }> = {};
  for (const [i, entry] of (doc as { roles: unknown[] }).roles.entries()) {
    if (typeof entry !== 'object' || entry === null)
      throw invalid(`roles[${i}] must be a mapping with name and ${connector}`);
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      if (key !== 'name' && key !== connector)
        throw invalid(`roles[${i}] has an unknown key '${key.slice(0, 40)}'`);
    }
    const name = e['name'];
    if (!isRole(name))
      throw invalid(`roles[${i}]: unknown role '${String(name).slice(0, 40)}' (roles: ${ROLES.join(', ')})`);
    if (Object.hasOwn(config, name)) throw invalid(`roles[${i}]: role '${name}' is listed twice`);
    const members = (e[connector] ?? {}) as Record<string, unknown>;
    if (typeof members !== 'object' || Array.isArray(members))
      throw invalid(`roles[${i}].${connector} must be a mapping`);
    for (const key of Object.keys(members)) {
      if (key !== 'users' && key !== 'teams')
        throw invalid(`roles[${i}].${connector} has an unknown key '${key.slice(0, 40)}' (use users, teams)`);
    }
    config[name] = { users: members['users'], groups: members['teams'] };
  }
  return parseTeamAuth(config, connector);
}

/** fly set-team flags: every user and team given becomes an owner. */
export function teamAuthFromFlags(
  users: string[],
  groups: string[],
  connector = 'bitbucket-cloud',
): TeamAuth {
  return parseTeamAuth({ owner: { users, groups } }, connector);
}

/**
 * What a team config is matched against (SPEC §6.3): uuid, account_id and username, never a nickname,
 * each as its kind; and every group. Prefixed and ASCII-lower-cased like the entries; `users` are also
 * the keys of the login index (which only narrows the teams; the match itself is by kind).
 */
export function principalsOf(identity: Identity): { users: string[]; groups: string[]; typed: string[] } {
  let principals = principalsCache.get(identity);
  if (!principals) {
    const prefix = `${identity.connector}:`;
    const ids: [UserEntryKind, string | undefined][] = [
      ['uuid', identity.userId],
      ['account id', identity.accountId],
      ['username', identity.userName],
    ];
    const present = ids.flatMap(([kind, id]): [UserEntryKind, string][] =>
      id ? [[kind, prefix + asciiLower(id)]] : [],
    );
    principals = {
      users: [...new Set(present.map(([, entry]) => entry))],
      typed: present.map(([kind, entry]) => typedEntry(kind, entry)),
      groups: [...new Set(identity.groups.map((g) => prefix + asciiLower(g)))],
    };
    principalsCache.set(identity, principals);
  }
  return principals;
}

/** `<kind>|<entry>`: the key of a user entry in a config's index, and of an identity's ids. */
const typedEntry = (kind: UserEntryKind, entry: string): string => `${kind}|${entry}`;

/** The kind of a prefixed user entry, as stored in a config. */
export function kindOfEntry(entry: string): UserEntryKind {
  const colon = entry.indexOf(':');
  return userEntryKind(colon === -1 ? entry : entry.slice(colon + 1));
}

/*
 * Guards match on every request, so both sides are computed once per object: the principals of an
 * identity (the guards keep one identity per verified token), and each config's entry → roles index.
 * Neither object may change afterwards: tokens' claims and stored configs are never mutated.
 */
const principalsCache = new WeakMap<Identity, { users: string[]; groups: string[]; typed: string[] }>();
type EntryIndex = { users: Map<string, number>; groups: Map<string, number> };
const entryIndexes = new WeakMap<TeamAuth, EntryIndex>();

/** Each entry → the bit set of the roles (bit i = ROLES[i]) that name it; user entries by kind. */
function entryIndex(auth: TeamAuth): EntryIndex {
  let index = entryIndexes.get(auth);
  if (!index) {
    const users = new Map<string, number>();
    const groups = new Map<string, number>();
    for (const [i, role] of ROLES.entries()) {
      for (const u of auth[role]?.users ?? []) {
        const key = typedEntry(kindOfEntry(u), u);
        users.set(key, (users.get(key) ?? 0) | (1 << i));
      }
      for (const g of auth[role]?.groups ?? []) groups.set(g, (groups.get(g) ?? 0) | (1 << i));
    }
    entryIndexes.set(auth, (index = { users, groups }));
  }
  return index;
}

/** The bit set of the roles whose entries name the person. */
function heldRoles(identity: Identity, auth: TeamAuth): number {
  const index = entryIndex(auth);
  const { typed, groups } = principalsOf(identity);
  let held = 0;
  for (const u of typed) held |= index.users.get(u) ?? 0;
  for (const g of groups) held |= index.groups.get(g) ?? 0;
  return held;
}

/** Every role of the config whose entries name the person, highest first. */
export function rolesOf(identity: Identity, auth: TeamAuth): Role[] {
  const held = heldRoles(identity, auth);
  return ROLES.filter((_, i) => (held & (1 << i)) !== 0);
}

/** The highest role held (SPEC §6.3), or null: the lowest bit set, as ROLES run highest first. */
export function roleOf(identity: Identity, auth: TeamAuth): Role | null {
  const held = heldRoles(identity, auth);
  return held === 0 ? null : (ROLES[31 - Math.clz32(held & -held)] ?? null);
}

/** Every entry of a config: what the login index must point at this team. */
export function teamAuthEntries(auth: TeamAuth): { users: string[]; groups: string[] } {
  const users = new Set<string>();
  const groups = new Set<string>();
  for (const role of ROLES) {
    for (const u of auth[role]?.users ?? []) users.add(u);
    for (const g of auth[role]?.groups ?? []) groups.add(g);
  }
  return { users: [...users], groups: [...groups] };
}
