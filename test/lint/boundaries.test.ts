/**
 * The layering of lib/ is an eslint rule (eslint.config.mjs, README "Layering is a lint rule"): an import
 * that breaks a boundary fails `npm run lint`. Each probe is linted as if it were a file at that path,
 * with the project's own configuration (only no-restricted-imports runs, so no type information is needed).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const REFUSED: [file: string, from: string, why: string][] = [
  ['lib/http/probe.ts', '../bitbucket/connector', 'http/ names no connector'],
  ['lib/http/probe.ts', '../local/users', 'http/ names no connector'],
  ['lib/teams/probe.ts', '../local/connector', 'teams/ and tokens/ name no connector'],
  ['lib/tokens/probe.ts', '../http/guards', 'teams/ and tokens/ sit below http/'],
  ['lib/config/probe.ts', '../local/settings', 'config/ and cli/ name no connector'],
  ['lib/cli/commands/probe.ts', '../../bitbucket', 'config/ and cli/ name no connector'],
  ['lib/store/probe.ts', '../teams/auth', 'store/ is the bottom layer'],
  ['lib/bitbucket/probe.ts', '../local/users', 'a connector knows only its own upstream'],
  ['lib/local/probe.ts', '../config', 'a connector reads its settings through config/sources only'],
  ['lib/local/probe.ts', '../config/options', 'a connector reads its settings through config/sources only'],
  ['lib/http/probe.ts', '../testing/fake-bitbucket', 'only lib/testing knows the fake Bitbucket'],
  ['lib/config/probe.ts', '../testing', 'only lib/testing knows the fake Bitbucket'],
];
const ALLOWED: [file: string, from: string][] = [
  ['lib/http/probe.ts', '../connectors'],
  ['lib/config/probe.ts', '../connectors'],
  ['lib/local/probe.ts', '../config/sources'],
  ['lib/bitbucket/probe.ts', '../connector'],
  ['lib/testing/probe.ts', './fake-bitbucket'],
];

const probes = [...REFUSED.map(([file, from]) => [file, from]), ...ALLOWED];
const messages = JSON.parse(
  execFileSync(process.execPath, [path.join(__dirname, 'lint-probes.mjs')], {
    input: JSON.stringify(probes),
    encoding: 'utf8',
    timeout: 60_000,
  }),
) as string[][];

test.each(REFUSED.map((probe, i) => [...probe, i] as const))(
  '%s importing %s fails lint: %s',
  (_file, _from, why, i) => {
    expect(messages[i]?.join('\n')).toContain(why);
  },
);

test.each(ALLOWED.map((probe, i) => [...probe, REFUSED.length + i] as const))(
  '%s may import %s',
  (_file, _from, i) => {
    expect(messages[i]).toEqual([]);
  },
);
