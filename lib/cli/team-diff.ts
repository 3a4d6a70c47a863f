import { splitPrefixed } from '../connectors';
import { diffTeamAuth, ROLES, type Role, type TeamAuth } from '../teams/auth';

/** Which list of a role an entry is in. */
export type EntryList = 'users' | 'groups';

/** One entry that a new config adds to a role (`+`) or takes away from it (`-`). */
export interface EntryChange {
  sign: '+' | '-';
  list: EntryList;
  /** The entry as the API has it, prefixed: `bitbucket-cloud:alice`. */
  entry: string;
}

/** What a new config changes in one role: `added`, a role the team did not have; `removed`, one it loses. */
export interface RoleDiff {
  role: Role;
  was: 'added' | 'removed' | 'changed';
  entries: EntryChange[];
}

/** Roles in the order set-team shows them (fly sorts them by name). */
const SHOWN_ROLES: readonly Role[] = [...ROLES].sort();

/**
 * What applying `next` to a team configured as `current` changes, role by role (the server's own
 * diffTeamAuth, which the audit trail records): the entries it takes away, then those it adds. Entries
 * are compared as sets: listing the same entries in another order changes nothing. Empty: no changes.
 */
export function teamChanges(current: TeamAuth, next: TeamAuth): RoleDiff[] {
  const diff = diffTeamAuth(current, next);
  const changes: RoleDiff[] = [];
  for (const role of SHOWN_ROLES) {
    const change = diff[role];
    if (!change) continue;
    const entries: EntryChange[] = [];
    for (const [sign, side] of [
      ['-', change.removed],
      ['+', change.added],
    ] as const) {
      for (const list of ['users', 'groups'] as const)
        for (const entry of side[list]) entries.push({ sign, list, entry });
    }
    changes.push({ role, was: !current[role] ? 'added' : !next[role] ? 'removed' : 'changed', entries });
  }
  return changes;
}

/**
 * An entry in the words of its connector's set-team flag: `bitbucket-cloud user alice`,
 * `bitbucket-cloud team acme/devs`, `local user bob`. An entry of a connector sky does not know (saved
 * by a node that has it) keeps its prefix: `user github:alice`.
 */
export function entryWords(list: EntryList, entry: string): string {
  const generic = list === 'users' ? 'user' : 'group';
  const prefixed = splitPrefixed(entry);
  if (!prefixed) return `${generic} ${entry}`;
  const { module, bare } = prefixed;
  const flag = list === 'users' ? module.entries.userFlag : module.entries.groupFlag;
  const own = `${module.id}-`;
  const word = flag?.name.startsWith(own) ? flag.name.slice(own.length) : generic;
  return `${module.id} ${word} ${bare}`;
}

/**
 * The changes as set-team prints them, after the config it is about to apply:
 *
 *     changes:
 *
 *     role member:
 *     - local user bob
 *     + bitbucket-cloud user alice
 *
 *     role viewer (removed):
 *     - bitbucket-cloud team acme
 *
 * `-` and `+` start the line (the config above lists its entries indented), so `grep '^[-+] '` finds them.
 */
export function renderChanges(changes: readonly RoleDiff[]): string {
  const lines = ['changes:'];
  for (const { role, was, entries } of changes) {
    lines.push(
      '',
      `role ${role}${was === 'changed' ? '' : ` (${was})`}:`,
      ...entries.map(({ sign, list, entry }) => `${sign} ${entryWords(list, entry)}`),
    );
  }
  return lines.join('\n') + '\n';
}
