/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', {}] },
  globalSetup: '<rootDir>/test/harness/global-setup.ts',
  globalTeardown: '<rootDir>/test/harness/global-teardown.ts',
  testTimeout: 20000,
  // Test files run one at a time (2 cores; the soak and fault tests measure time), each in a fresh worker
  // process: a limit no worker stays under makes jest replace the worker after every file. Nothing a file
  // leaves behind (timers, sockets, threads, a forced GC) reaches the next one; the in-band run stalled
  // in a futex wait after 40 files, once in about four full runs. It costs about 1 s per file.
  maxWorkers: 1,
  workerIdleMemoryLimit: '1kb',
};
