import { z } from 'zod';
import type { ConnectorSettings } from '../connector';
import { SkyError } from '../errors';
import type { DexDocument, EnvSource, Sourced } from '../config/sources';
import { BCRYPT, parseLocalUsers, type LocalUser } from './users';

/** sky()'s `localUsers` option: Concourse's CONCOURSE_ADD_LOCAL_USER entries, `name:password` or `name:$2a$…`. */
const schema = z.array(z.string());

export type LocalFields = { users?: Sourced<string[]> | undefined };

const invalid = (message: string): SkyError => new SkyError('invalid_config', message);

/**
 * dex's password database: `enablePasswordDB: true` and `staticPasswords` (`username`, and `hash` or
 * `hashFromEnv`: a bcrypt hash, plain or base64-encoded as dex accepts it). A user is `username`, as
 * Concourse's local users are names; dex's `email` and `userID` have no counterpart and are ignored.
 */
function fromDex({ doc, file, env }: DexDocument): LocalFields {
  const passwords = doc['staticPasswords'];
  if (passwords === undefined || passwords === null) return {};
  const at = `${file}: staticPasswords`;
  if (!Array.isArray(passwords)) throw invalid(`${at} must be a list`);
  if (doc['enablePasswordDB'] !== true)
    throw invalid(`${at} is set but enablePasswordDB is not true (dex would not log these users in)`);
  const users = passwords.map((entry: unknown, i) => {
    const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    const name = e['username'];
    if (typeof name !== 'string' || name === '') throw invalid(`${at}[${i}].username must be a name`);
    let hash = e['hash'];
    if (hash === undefined && typeof e['hashFromEnv'] === 'string') {
      hash = env[e['hashFromEnv']];
      if (hash === undefined || hash === '')
        throw invalid(`${at}[${i}].hashFromEnv: environment variable ${e['hashFromEnv']} is not set`);
    }
    if (typeof hash !== 'string') throw invalid(`${at}[${i}] needs a hash (or hashFromEnv)`);
    const decoded = BCRYPT.test(hash) ? hash : Buffer.from(hash, 'base64').toString('utf8');
    // Never a plain password from a YAML file: dex takes hashes only.
    if (!BCRYPT.test(decoded)) throw invalid(`${at}[${i}].hash is not a bcrypt hash`);
    return `${name}:${decoded}`;
  });
  return { users: { value: users, source: at } };
}

/**
 * How local users are configured: CONCOURSE_ADD_LOCAL_USER (Concourse), dex's `staticPasswords`, or the
 * `localUsers` option. Any user turns the connector on.
 */
export const localSettings: ConnectorSettings<'localUsers', typeof schema, LocalFields, LocalUser[]> = {
  key: 'localUsers',
  schema,
  howToEnable: 'CONCOURSE_ADD_LOCAL_USER (option localUsers)',
  fromOption: (value) => ({ users: { value, source: 'option localUsers' } }),
  // Concourse's form: name:password or name:bcrypt-hash, comma-separated (the value is never logged).
  fromEnv: (env: EnvSource) => ({ users: env.list('CONCOURSE_ADD_LOCAL_USER') }),
  dex: { fromDocument: fromDex },
  resolve({ users }, problems) {
    if (!users) return null;
    try {
      const parsed = parseLocalUsers(users.value, users.source);
      return parsed.length > 0 ? parsed : null;
    } catch (err) {
      problems.push((err as Error).message);
      return null;
    }
  },
};
