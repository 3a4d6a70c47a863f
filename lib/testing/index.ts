export {
  FakeBitbucket,
  type Fault,
  type FakeBitbucketOptions,
  type OptionalEndpoint,
  type RecordedRequest,
} from './fake-bitbucket';
export {
  loadFixtures,
  type FakeClient,
  type FakeFixtures,
  type FakeUser,
  type FakeWorkspace,
  type Permission,
} from './fixtures';
export { Browser, type Hop } from './browser';
export { loginAs, type LoggedIn } from './login';
