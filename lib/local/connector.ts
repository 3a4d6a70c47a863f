import { Strategy as LocalStrategy } from 'passport-local';
import type { ConnectorModuleOf, Identity } from '../connector';
import { SkyError } from '../errors';
import { localSettings } from './settings';
import { LocalUserDirectory, nameProblem, type LocalUser } from './users';

export const LOCAL = 'local';

const identityOf = (user: LocalUser): Identity => ({
  connector: LOCAL,
  userId: user.name,
  accountId: user.name,
  userName: user.name,
  name: user.name,
  groups: [],
});

const refused = (): SkyError => new SkyError('invalid_grant', 'wrong username or password');

/**
 * Local users (Concourse's `CONCOURSE_ADD_LOCAL_USER`): the break-glass login that works while the
 * upstream provider is down. A username/password form through passport-local, `grant_type=password`
 * for `sky login -u -p`; bcrypt hashes compared in constant time; no groups and no upstream refresh
 * (a refresh checks the user is still configured).
 */
export const localUsers: ConnectorModuleOf<typeof localSettings> = {
  id: LOCAL,
  displayName: 'a local user',
  login: 'password',
  settings: localSettings,
  entries: {
    yamlKey: LOCAL,
    userFlag: {
      name: 'local-user',
      value: 'USERNAME',
      description: 'A local user to make an owner; repeatable',
      mainTeam: 'localUsers',
    },
    userKind: () => 'username',
    check: (bare, where) => {
      const problem = nameProblem(bare);
      return problem ? `${where}: ${problem}` : null;
    },
    userIds: (identity) => (identity.userName ? [['username', identity.userName]] : []),
  },
  create(_deps, configured) {
    const users = new LocalUserDirectory(configured);
    const check = async (username: string, password: string): Promise<Identity> => {
      const user = await users.check(username, password);
      if (!user) throw refused();
      return identityOf(user);
    };
    const plain = new Map<string, string[]>(); // where → the users whose password it gives in plain text
    for (const { name, plainIn } of configured)
      if (plainIn !== null) plain.set(plainIn, [...(plain.get(plainIn) ?? []), name]);
    return {
      strategy: new LocalStrategy((username, password, done) => {
        check(username, password).then(
          (identity) => done(null, { identity }),
          (err: unknown) =>
            err instanceof SkyError && err.code === 'invalid_grant' ? done(null, false) : done(err),
        );
      }),
      password: check,
      configuredUser: (typed) => users.get(typed)?.name ?? null,
      revalidate: async (userId) => {
        const user = users.get(userId);
        if (!user)
          throw new SkyError('invalid_grant', 'this local user is no longer configured: log in again');
        return identityOf(user);
      },
      warnings: [...plain].map(
        ([source, users]) =>
          `${source} gives the password of ${users.join(', ')} in plain text: give a bcrypt hash instead (htpasswd -nbBC 10 NAME PASSWORD prints name:hash)`,
      ),
    };
  },
};
