import { parse, YAMLParseError } from 'yaml';

/**
 * YAML as sky reads it (roles files, dex configs, ~/.skyrc): aliases bounded (a billion-laughs document
 * is refused), and a syntax error said in one line that ends on where it is, not on the yaml library's
 * dangling colon before its code excerpt.
 */
export function parseYamlText(text: string): { doc: unknown } | { problem: string } {
  try {
    return { doc: parse(text, { maxAliasCount: 50 }) as unknown };
  } catch (err) {
    if (!(err instanceof YAMLParseError))
      return { problem: err instanceof Error ? err.message : String(err) };
    const first = (err.message.split('\n')[0] ?? '')
      .replace(/ at line \d+, column \d+:?$/, '')
      .replace(/:$/, '');
    const at = err.linePos?.[0];
    return { problem: at ? `${first} (line ${at.line}, column ${at.col})` : first };
  }
}
