import { parseYamlText } from '../yaml';
import type { ConnectorModule, Identity } from '../connector';
import { CONNECTORS, DEFAULT_CONNECTOR, connectorModule, splitPrefixed } from '../connectors';
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

interface EntryRules {
  /** Refuse non-ASCII entries (writes); stored configs are read as they are. */
  strict: boolean;
}

/**
 * An entry's connector: its own prefix when it names a connector sky knows, else the default one
 * (fly's bare `bob` is `bitbucket-cloud:bob`). A stored entry with a prefix sky does not know (written
 * for a connector this node lacks) is kept as saved: it matches no identity here.
 */
function entryOf(entry: string, stored: boolean): { module: ConnectorModule | null; bare: string } {
  const prefixed = splitPrefixed(entry);
  if (prefixed) return prefixed;
  if (stored && /^[a-z0-9-]+:/.test(entry)) return { module: null, bare: entry };
  return { module: DEFAULT_CONNECTOR, bare: entry };
}

function normaliseEntries(
  value: unknown,
  where: string,
  kind: 'users' | 'groups',
  rules: EntryRules,
): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(`${where} must be a list of strings`);
  if (value.length > MAX_ENTRIES) throw invalid(`${where} has more than ${MAX_ENTRIES} entries`);
  const entries = new Set<string>();
  for (const raw of value) {
    if (typeof raw !== 'string') throw invalid(`${where} must be a list of strings`);
    const entry = asciiLower(raw.trim());
    const { module, bare } = entryOf(entry, !rules.strict);
    if (bare === '') throw invalid(`${where} contains an empty entry`);
    // The limit is on the entry without its prefix, so a stored (prefixed) config validates again on read.
    if (bare.length > MAX_ENTRY_LENGTH)
      throw invalid(`${where} has an entry longer than ${MAX_ENTRY_LENGTH} characters`);
    if (!module) {
      entries.add(bare);
      continue;
    }
    if (rules.strict) {
      if (kind === 'groups' && module.entries.yamlGroups === undefined)
        throw invalid(`${where} entry '${entry.slice(0, 80)}': ${module.displayName} has no groups`);
      const problem = module.entries.check(bare, where);
      if (problem) throw invalid(problem);
    }
    entries.add(`${module.id}:${bare}`);
  }
  return [...entries];
}

/**
 * Validates and normalises a Concourse auth config with Concourse's messages. Entries are trimmed,
 * lower-cased (ASCII), deduplicated and given the default connector's prefix when they name none; an
 * entry its connector refuses (Bitbucket: non-ASCII) is refused, except in a config read back from the
 * store (`stored`), which is taken as saved.
 */
export function parseTeamAuth(raw: unknown, { stored = false }: { stored?: boolean } = {}): TeamAuth {
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
    const users = normaliseEntries(m['users'], `${role}.users`, 'users', rules);
    const groups = normaliseEntries(m['groups'], `${role}.groups`, 'groups', rules);
    if (users.length === 0 && groups.length === 0) throw invalid(NO_MEMBERS);
    auth[role] = { users, groups };
  }
  return auth;
}

/** An entry given under a connector (a YAML key, a CLI flag) is that connector's, prefixed or not. */
function withPrefix(id: string, value: string): string {
  const entry = value.trim();
  return asciiLower(entry).startsWith(`${id}:`) ? entry : `${id}:${entry}`;
}

const yamlKeys = (): string => CONNECTORS.map((c) => c.entries.yamlKey).join(', ');

/**
 * fly set-team --config (SPEC §6.2): `roles: [{name, bitbucket-cloud: {users, teams}, local: {users}}]`,
 * one key per connector (its users, and its groups under the connector's own word: Concourse's `teams`).
 */
export function parseRolesYaml(text: string, file?: string): TeamAuth {
  const parsed = parseYamlText(text);
  if ('problem' in parsed) {
    throw invalid(`invalid roles YAML${file === undefined ? '' : ` in '${file}'`}: ${parsed.problem}`);
  }
  const { doc } = parsed;
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as Record<string, unknown>)['roles'])) {
    throw invalid(EMPTY);
  }
  const config: Record<string, { users: unknown[]; groups: unknown[] }> = {};
  for (const [i, entry] of (doc as { roles: unknown[] }).roles.entries()) {
    if (typeof entry !== 'object' || entry === null)
      throw invalid(`roles[${i}] must be a mapping with name and ${yamlKeys()}`);
    const e = entry as Record<string, unknown>;
    const name = e['name'];
    const members = { users: [] as unknown[], groups: [] as unknown[] };
    for (const key of Object.keys(e)) {
      if (key === 'name') continue;
      const module = CONNECTORS.find((c) => c.entries.yamlKey === key);
      if (!module)
        throw invalid(`roles[${i}] has an unknown key '${key.slice(0, 40)}' (use name, ${yamlKeys()})`);
      const mapping = e[key] ?? {};
      if (typeof mapping !== 'object' || Array.isArray(mapping))
        throw invalid(`roles[${i}].${key} must be a mapping`);
      const { yamlGroups } = module.entries;
      for (const [field, list] of Object.entries(mapping as Record<string, unknown>)) {
        if (field !== 'users' && field !== yamlGroups) {
          const allowed = yamlGroups ? `users, ${yamlGroups}` : 'users';
          throw invalid(`roles[${i}].${key} has an unknown key '${field.slice(0, 40)}' (use ${allowed})`);
        }
        if (list === undefined || list === null) continue;
        if (!Array.isArray(list)) throw invalid(`roles[${i}].${key}.${field} must be a list of strings`);
        // Entries are this connector's, whatever they look like: a bare `bob` under `local` is `local:bob`.
        const prefixed = list.map((v: unknown) => (typeof v === 'string' ? withPrefix(module.id, v) : v));
        members[field === 'users' ? 'users' : 'groups'].push(...prefixed);
      }
    }
    if (!isRole(name))
      throw invalid(`roles[${i}]: unknown role '${String(name).slice(0, 40)}' (roles: ${ROLES.join(', ')})`);
    if (Object.hasOwn(config, name)) throw invalid(`roles[${i}]: role '${name}' is listed twice`);
    config[name] = members;
  }
  return parseTeamAuth(config);
}

/** The roles YAML of a config, which parseRolesYaml reads back unchanged. */
export function rolesYamlOf(auth: TeamAuth): string {
  const lines = ['roles:'];
  for (const role of ROLES) {
    const members = auth[role];
    if (!members) continue;
    lines.push(`- name: ${role}`);
    for (const module of CONNECTORS) {
      const own = (entries: string[]) =>
        entries.filter((e) => e.startsWith(`${module.id}:`)).map((e) => e.slice(module.id.length + 1));
      const users = own(members.users);
      const groups = module.entries.yamlGroups ? own(members.groups) : [];
      if (users.length === 0 && groups.length === 0) continue;
      lines.push(`  ${module.entries.yamlKey}:`);
      if (users.length > 0) lines.push(`    users: ${JSON.stringify(users)}`);
      if (groups.length > 0) lines.push(`    ${module.entries.yamlGroups}: ${JSON.stringify(groups)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** fly set-team flags: every user and group given (each under its connector's flags) becomes an owner. */
export function teamAuthFromFlags(
  byConnector: Record<string, { users: string[]; groups: string[] }>,
): TeamAuth {
  const users: string[] = [];
  const groups: string[] = [];
  for (const [id, given] of Object.entries(byConnector)) {
    if (!connectorModule(id)) throw invalid(`unknown connector '${id.slice(0, 40)}'`);
    users.push(...given.users.map((u) => withPrefix(id, u)));
    groups.push(...given.groups.map((g) => withPrefix(id, g)));
  }
  return parseTeamAuth({ owner: { users, groups } });
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
    const ids = connectorModule(identity.connector)?.entries.userIds(identity) ?? [];
    const present = ids.flatMap(([kind, id]): [string, string][] =>
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
const typedEntry = (kind: string, entry: string): string => `${kind}|${entry}`;

/** The kind of a prefixed user entry, as its connector reads it ('unknown': no connector sky knows). */
export function kindOfEntry(entry: string): string {
  const prefixed = splitPrefixed(entry);
  return prefixed ? prefixed.module.entries.userKind(prefixed.bare) : 'unknown';
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

/** What a team write changes in one role: entries added and removed (prefixed, as stored). */
export interface RoleChange {
  added: { users: string[]; groups: string[] };
  removed: { users: string[]; groups: string[] };
}

/** The per-role difference between two configs (`before` null: a new team); roles without change are left out. */
export function diffTeamAuth(
  before: TeamAuth | null,
  after: TeamAuth | null,
): Partial<Record<Role, RoleChange>> {
  const changes: Partial<Record<Role, RoleChange>> = {};
  const minus = (a: string[] = [], b: string[] = []): string[] => a.filter((x) => !b.includes(x));
  for (const role of ROLES) {
    const was = before?.[role];
    const now = after?.[role];
    const change: RoleChange = {
      added: { users: minus(now?.users, was?.users), groups: minus(now?.groups, was?.groups) },
      removed: { users: minus(was?.users, now?.users), groups: minus(was?.groups, now?.groups) },
    };
    const { added, removed } = change;
    if (added.users.length + added.groups.length + removed.users.length + removed.groups.length > 0)
      changes[role] = change;
  }
  return changes;
}
