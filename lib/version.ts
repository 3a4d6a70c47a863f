import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * sky's own version: the nearest package.json above this file (the package's own, beside dist/ or lib/,
 * wherever the compiled files are run from: a host app's node_modules, the bench's build).
 */
function readVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const { version } = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown };
      return typeof version === 'string' ? version : 'unknown';
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

export const VERSION = readVersion();
