// Lints probe imports with the project's eslint configuration, as if each were a file at its path
// (only no-restricted-imports runs, so no type information is needed). Reads [[file, from], …] as JSON
// on stdin, prints the messages of each probe as JSON. Run by test/lint/boundaries.test.ts in a child
// process: jest's module sandbox cannot load eslint's ESM config.
import path from 'node:path';
import process from 'node:process';
import { ESLint } from 'eslint';

const root = path.resolve(import.meta.dirname, '../..');
const eslint = new ESLint({
  cwd: root,
  ruleFilter: ({ ruleId }) => ruleId === 'no-restricted-imports',
  overrideConfig: { languageOptions: { parserOptions: { projectService: false } } },
});
let input = '';
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const [file, from] of JSON.parse(input)) {
  const code = `import * as probe from '${from}';\nexport const used = probe;\n`;
  const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
  out.push(result.messages.map((m) => m.message));
}
process.stdout.write(JSON.stringify(out));
