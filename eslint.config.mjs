import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** `no-restricted-imports` patterns: the folders a layer may not reach (relative imports, any depth). */
const forbid = (folders, why) => ({
  group: folders.flatMap((f) => [`**/${f}`, `**/${f}/**`]),
  message: why,
});
const CONNECTOR_FOLDERS = ['bitbucket', 'local'];
/** A connector reads its settings through config/sources (config/ itself iterates the registry). */
const SETTINGS_ONLY = {
  regex: '^(\\.\\./)+config(/(index|options|env|dex|types))?$',
  message: 'a connector reads its settings through config/sources only (config/ builds on the registry)',
};

/** The layering of lib/ (README "Code layout"): http → connectors, teams, tokens → store. */
const layers = [
  {
    files: ['lib/http/**/*.ts'],
    patterns: [
      forbid(CONNECTOR_FOLDERS, 'http/ names no connector: iterate the registry (lib/connectors.ts)'),
    ],
  },
  {
    files: ['lib/teams/**/*.ts', 'lib/tokens/**/*.ts'],
    patterns: [
      forbid(['http'], 'teams/ and tokens/ sit below http/'),
      forbid(
        CONNECTOR_FOLDERS,
        'teams/ and tokens/ name no connector: iterate the registry (lib/connectors.ts)',
      ),
    ],
  },
  {
    files: ['lib/config/**/*.ts', 'lib/cli/**/*.ts'],
    patterns: [
      forbid(
        CONNECTOR_FOLDERS,
        'config/ and cli/ name no connector: iterate the registry (lib/connectors.ts)',
      ),
    ],
  },
  {
    files: ['lib/store/**/*.ts'],
    patterns: [forbid(['http', 'teams', 'tokens', ...CONNECTOR_FOLDERS], 'store/ is the bottom layer')],
  },
  {
    files: ['lib/bitbucket/**/*.ts'],
    patterns: [forbid(['http', 'local'], 'a connector knows only its own upstream'), SETTINGS_ONLY],
  },
  {
    files: ['lib/local/**/*.ts'],
    patterns: [forbid(['http', 'bitbucket'], 'a connector knows only its own upstream'), SETTINGS_ONLY],
  },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'test-artifacts/**', 'jest.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', { paths: ['nock'] }],
    },
  },
  {
    // The page scripts (lib/http/pages/assets): plain browser JavaScript that the pages put inline.
    files: ['lib/**/assets/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: Object.fromEntries(
        [
          'AbortController',
          'clearTimeout',
          'document',
          'fetch',
          'history',
          'location',
          'navigator',
          'sessionStorage',
          'setTimeout',
          'URL',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
  // The product is linted with type information (typescript-eslint's type-checked rules).
  {
    files: ['lib/**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // `async` on a function without `await` is how sky turns a throw into a rejection (Express 5
      // handlers, store calls): on purpose, so this rule is off.
      '@typescript-eslint/require-await': 'off',
    },
  },
  ...layers.map(({ files, patterns }) => ({
    files,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['nock'],
          patterns: [...patterns, forbid(['testing'], 'only lib/testing knows the fake Bitbucket')],
        },
      ],
    },
  })),
  {
    // Nothing under lib/ but testing/ imports the fake; the web node's embedded default (SPEC §1) starts it.
    files: ['lib/**/*.ts'],
    ignores: ['lib/testing/**', 'lib/server.ts', ...layers.flatMap((l) => l.files)],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: ['nock'], patterns: [forbid(['testing'], 'only lib/testing knows the fake Bitbucket')] },
      ],
    },
  },
);
