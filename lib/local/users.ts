import bcrypt from 'bcryptjs';
import { SkyError } from '../errors';
import { asciiLower } from '../teams/auth';

/** A local user as configured: the name, and a bcrypt hash (a plain password is hashed at start). */
export interface LocalUser {
  name: string;
  hash: string;
  /** Where the password was given in plain text (the start-up warning names it); null: a bcrypt hash. */
  plainIn: string | null;
}

/** Concourse's own shape: `name:password` or `name:$2a$…` (bcrypt), comma-separated. */
const USER_NAME = /^[a-z0-9][a-z0-9._@-]{0,63}$/;
export const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
/** The cost of hashes sky makes of plain passwords (and of the hash an unknown user is checked against). */
const COST = 10;
/** Longer passwords are refused unread (bcrypt reads 72 bytes anyway); the answer is the same as a wrong one. */
export const MAX_PASSWORD_LENGTH = 1024;

const invalid = (message: string): SkyError => new SkyError('invalid_config', message);

/** Names are case-insensitive (team entries are lower-cased), compared as typed otherwise. */
export function normaliseName(name: string): string {
  return asciiLower(name.trim());
}

/** Why a local user name cannot be one (null: it can). */
export function nameProblem(name: string): string | null {
  return USER_NAME.test(name)
    ? null
    : `'${name.slice(0, 64)}' is not a local user name (1-64 lowercase letters, digits, '.', '_', '@' or '-', starting with a letter or digit)`;
}

/**
 * Parses CONCOURSE_ADD_LOCAL_USER's entries (`source` names where they came from): each `name:password`,
 * where a password of the bcrypt form is taken as a hash and anything else as plain text (which
 * cannot hold a comma: use a hash for that).
 */
export function parseLocalUsers(entries: readonly string[], source: string): LocalUser[] {
  const users = new Map<string, LocalUser>();
  for (const [index, raw] of entries.entries()) {
    const entry = raw.trim();
    if (entry === '') continue;
    const colon = entry.indexOf(':');
    // An entry without a name may be a password alone: only its place in the list is named.
    if (colon <= 0) {
      throw invalid(
        `${source}: entry ${index + 1} ${colon === 0 ? "has no name before ':'" : "has no ':'"}; each entry is name:password (or name:bcrypt-hash)`,
      );
    }
    const name = normaliseName(entry.slice(0, colon));
    const problem = nameProblem(name);
    if (problem) throw invalid(`${source}: ${problem}`);
    if (colon === entry.length - 1) {
      throw invalid(`${source}: local user '${name}' has no password (name:password or name:bcrypt-hash)`);
    }
    if (users.has(name)) throw invalid(`${source}: local user '${name}' is given twice`);
    const secret = entry.slice(colon + 1);
    const hashed = BCRYPT.test(secret);
    if (!hashed && secret.startsWith('$2')) {
      throw invalid(`${source}: the password of '${name}' looks like a bcrypt hash but is not a whole one`);
    }
    const hash = hashed ? secret : bcrypt.hashSync(secret.normalize('NFC'), COST);
    users.set(name, { name, hash, plainIn: hashed ? null : source });
  }
  return [...users.values()];
}

/**
 * The users a node checks passwords against, with a hash no password is checked against in earnest, so
 * an unknown user costs as long as a known one. The decoy is made once, when the connector is created
 * (a node without local users never pays for it).
 */
export class LocalUserDirectory {
  private readonly users: ReadonlyMap<string, LocalUser>;
  private readonly decoy = bcrypt.hashSync('sky decoy: no user has this password', COST);

  constructor(users: readonly LocalUser[]) {
    this.users = new Map(users.map((u) => [u.name, u]));
  }

  /** The configured user a typed name is, if any. */
  get(name: string): LocalUser | undefined {
    return this.users.get(normaliseName(name));
  }

  /**
   * Checks a name and password in about constant time: an unknown name, an empty, over-long or wrong
   * password all take one bcrypt comparison and give the same answer (null).
   */
  async check(name: string, password: string): Promise<LocalUser | null> {
    const user = this.get(name);
    const usable = password !== '' && password.length <= MAX_PASSWORD_LENGTH;
    const ok = await bcrypt.compare(usable ? password.normalize('NFC') : '', user?.hash ?? this.decoy);
    return ok && usable && user ? user : null;
  }
}
