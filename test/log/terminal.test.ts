import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** Logs are lines for a person at a terminal (pino-pretty) and JSON for anything else (README "Logs"). */
const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = `require('tsx/cjs'); const { createLogger } = require('./lib/log.ts'); createLogger('info').info({ token: 'secret-token', team: 'main' }, 'hello from sky')`;

test('on a terminal: readable lines, secrets still redacted; in a pipe: one JSON object per line', () => {
  const command = `node -e "${SNIPPET.replace(/"/g, '\\"')}"`;
  const terminal = execFileSync('script', ['-qefc', command, '/dev/null'], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1' },
  })
    .toString()
    .replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '');
  expect(terminal).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: hello from sky\r?\n/);
  expect(terminal).toContain('team: "main"');
  expect(terminal).toContain('token: "[redacted]"');
  expect(terminal).not.toContain('secret-token');
  const piped = execFileSync(process.execPath, ['-e', SNIPPET], { cwd: ROOT }).toString();
  expect(JSON.parse(piped)).toMatchObject({
    level: 30,
    msg: 'hello from sky',
    token: '[redacted]',
    team: 'main',
  });
});
