import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The fixture data the fake Bitbucket serves (fixtures/bitbucket.json, or a host app's own file). */

export type Permission = 'owner' | 'create-project' | 'member' | 'collaborator';

export interface FakeUser {
  /** Fixture key, used by consentAs() and in workspace member lists; never sent by the API. */
  key: string;
  /** Braced, as Bitbucket sends it: "{a11ce000-…}". */
  uuid: string;
  account_id: string;
  /** Deprecated by Bitbucket and absent for some accounts. */
  username?: string;
  /** Not unique: anyone can take any nickname. */
  nickname: string;
  display_name: string;
  emails: { email: string; is_primary: boolean; is_confirmed: boolean }[];
}

export interface FakeWorkspace {
  slug: string;
  uuid: string;
  name: string;
  members: { user: string; permission: Permission }[];
  groups: { name: string; slug: string; members: string[] }[];
}

export interface FakeClient {
  id: string;
  secret: string;
  /** Registered callback URL; when set, authorize refuses a redirect_uri outside it. */
  callbackUrl?: string;
}

export interface FakeFixtures {
  clients: FakeClient[];
  users: FakeUser[];
  workspaces: FakeWorkspace[];
}

/** Two levels up works from lib/testing (ts-jest) and from dist/testing (built package) alike. */
const DEFAULT_FIXTURES = path.join(__dirname, '..', '..', 'fixtures', 'bitbucket.json');

export function loadFixtures(file: string = DEFAULT_FIXTURES): FakeFixtures {
  return JSON.parse(readFileSync(file, 'utf8')) as FakeFixtures;
}
