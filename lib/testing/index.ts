export {
  FakeBitbucket,
  loadFixtures,
  type Fault,
  type FakeBitbucketOptions,
  type FakeClient,
  type FakeFixtures,
  type FakeUser,
  type FakeWorkspace,
  type Permission,
  type RecordedRequest,
} from './fake-bitbucket';
