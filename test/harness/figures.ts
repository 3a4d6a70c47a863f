import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The hardening tests' own figures (inputs tried, load held, faults survived) for docs/SECURITY.md:
 * each test records what it measured once its assertions passed; the global teardown of a long run
 * (SKY_LONG_TESTS=1) writes them into the document.
 */
const ROOT = path.join(__dirname, '..', '..');
const DIR = path.join(ROOT, 'test-artifacts', 'security');
const DOC = path.join(ROOT, 'docs', 'SECURITY.md');
const START = '<!-- figures:start (written by the tests: SKY_LONG_TESTS=1 npm test) -->';
const END = '<!-- figures:end -->';

/** Is this the long run (.ci/run sets it): longer loads and more fuzzing inputs. */
export const LONG = process.env['SKY_LONG_TESTS'] === '1';

export type Figures = Record<string, string | number>;

/** Adds `figures` under `section` (one file per section, so parallel test files never collide). */
export function recordFigures(section: string, figures: Figures): void {
  mkdirSync(DIR, { recursive: true });
  const file = path.join(DIR, `${section.replace(/[^a-z0-9-]+/gi, '-').toLowerCase()}.json`);
  let previous: { section: string; figures: Figures } = { section, figures: {} };
  try {
    previous = JSON.parse(readFileSync(file, 'utf8')) as typeof previous;
  } catch {
    // first figures of this section
  }
  writeFileSync(file, JSON.stringify({ section, figures: { ...previous.figures, ...figures } }, null, 2));
}

/** Forgets the figures of an earlier run. */
export function clearFigures(): void {
  mkdirSync(DIR, { recursive: true });
  for (const name of readdirSync(DIR)) writeFileSync(path.join(DIR, name), '');
}

/** Rewrites the figures block of docs/SECURITY.md from what this run recorded. */
export function writeSecurityFigures(when = new Date()): void {
  const sections: { section: string; figures: Figures }[] = [];
  for (const name of readdirSync(DIR).sort()) {
    const text = readFileSync(path.join(DIR, name), 'utf8');
    if (text.trim() !== '') sections.push(JSON.parse(text) as { section: string; figures: Figures });
  }
  const body = sections
    .map(
      ({ section, figures }) =>
        `### ${section}\n\n| measure | value |\n|---|---|\n` +
        Object.entries(figures)
          .map(([k, v]) => `| ${k} | ${v} |`)
          .join('\n'),
    )
    .join('\n\n');
  const doc = readFileSync(DOC, 'utf8');
  const from = doc.indexOf(START);
  const to = doc.indexOf(END);
  if (from < 0 || to < from) throw new Error(`docs/SECURITY.md lacks the figures markers`);
  const block = `${START}\n\n_Run of ${when.toISOString().slice(0, 16)} UTC, node ${process.version}._\n\n${body}\n\n${END}`;
  writeFileSync(DOC, doc.slice(0, from) + block + doc.slice(to + END.length));
}
