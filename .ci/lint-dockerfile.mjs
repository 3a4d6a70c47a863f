// Lints the Dockerfile without a Docker engine (none runs in CI): dockerfile-utils' validator (the
// Docker language server's: syntax, instructions, flags), then the rules README "Production" promises.
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { validate, ValidationSeverity } from 'dockerfile-utils';

const file = process.argv[2] ?? 'Dockerfile';
const text = readFileSync(file, 'utf8');
const problems = validate(text, {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
}).map((d) => `${file}:${d.range.start.line + 1}: ${d.message}`);
const lines = text.split('\n').filter((l) => !/^\s*#/.test(l));
const instructions = lines.map((l) => /^\s*([A-Z]+)\b/.exec(l)?.[1]).filter(Boolean);
const rule = (ok, message) => ok || problems.push(`${file}: ${message}`);
rule(
  instructions.filter((i) => i === 'FROM').length >= 2,
  'needs a build stage and a runtime stage (two FROMs)',
);
rule(
  lines.every((l) => !/^\s*FROM\s+\S+:latest\b/.test(l) && !/^\s*FROM\s+[^\s:]+\s*(AS|$)/i.test(l)),
  'every FROM pins a tag (not latest)',
);
const lastUser = [...lines].reverse().find((l) => /^\s*USER\s/.test(l));
rule(
  lastUser !== undefined && !/^\s*USER\s+(root|0)\b/.test(lastUser),
  'the runtime runs as a non-root USER',
);
rule(instructions.includes('HEALTHCHECK'), 'has a HEALTHCHECK');
rule(
  lines.some((l) => /^\s*CMD\s+\[/.test(l)),
  'CMD in exec form (a signal reaches node, not a shell)',
);
rule(
  lines.every((l) => !/^\s*ADD\s/.test(l)),
  'COPY, not ADD',
);
rule(
  lines.every((l) => !/\bapt-get install\b/.test(l) || /--no-install-recommends/.test(l)),
  'apt-get install --no-install-recommends',
);
if (problems.length > 0) {
  process.stderr.write(problems.join('\n') + '\n');
  process.exit(1);
}
process.stdout.write(`${file}: ok\n`);
