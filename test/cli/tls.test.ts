import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer, type Server } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { FakeBitbucket } from '../../lib/testing';
import { startNode, type TestNode } from '../harness/node';
import { inTerminal, pageToken, readSkyrc, sky, tempSkyrc } from './cli';

/**
 * A web node behind TLS with a private CA (SPEC §9): the system's CAs refuse it; `--ca-cert` trusts it
 * and is saved with the target (fly's `ca_cert`), as is `-k` (fly's `insecure`).
 */
jest.setTimeout(60_000);

let fake: FakeBitbucket;
let node: TestNode;
let tls: Server;
let url: string;
let caFile: string;

/** A CA and a certificate for 127.0.0.1 signed by it, made with openssl. */
function privateCa(dir: string): { ca: string; key: string; cert: string } {
  const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=sky test CA',
  ]);
  run([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'node.key',
    '-out',
    'node.csr',
    '-subj',
    '/CN=127.0.0.1',
  ]);
  writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  run([
    'x509',
    '-req',
    '-in',
    'node.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'node.pem',
    '-days',
    '2',
    '-extfile',
    'san.ext',
  ]);
  return {
    ca: path.join(dir, 'ca.pem'),
    key: readFileSync(path.join(dir, 'node.key'), 'utf8'),
    cert: readFileSync(path.join(dir, 'node.pem'), 'utf8'),
  };
}

beforeAll(async () => {
  fake = await FakeBitbucket.start();
  node = await startNode({ fake });
  const made = privateCa(mkdtempSync(path.join(os.tmpdir(), 'sky-ca-')));
  caFile = made.ca;
  // TLS in front of the node, as a proxy terminates it.
  const target = new URL(node.url);
  tls = createServer({ key: made.key, cert: made.cert }, (req, res) => {
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(tls.address() as { port: number }).port}`;
});
afterAll(async () => {
  tls.closeAllConnections();
  await new Promise<void>((resolve) => tls.close(() => resolve()));
  await node.close();
  await fake.stop();
});

test('without the CA the login fails with the TLS hint; --ca-cert logs in and is saved with the target', async () => {
  const skyrc = tempSkyrc();
  const refused = await inTerminal(skyrc, ['-t', 'tls', 'login', '-c', url]);
  expect(refused.code).toBe(1);
  expect(refused.output).toContain('its TLS certificate is not trusted');

  const token = await pageToken(node.url, fake, 'alice');
  const login = await sky(skyrc, ['-t', 'tls', 'login', '-c', url, '--ca-cert', caFile], `${token}\n`);
  expect(login.stderr).toBe('');
  expect(login.code).toBe(0);
  const saved = readSkyrc(skyrc).targets['tls'];
  expect(saved?.ca_cert).toBe(readFileSync(caFile, 'utf8'));
  expect(saved?.insecure).toBeUndefined();
  // Later commands use the saved CA.
  const status = await inTerminal(skyrc, ['-t', 'tls', 'status']);
  expect(status).toMatchObject({ code: 0, output: 'logged in successfully\n' });
  const badCa = await inTerminal(skyrc, ['-t', 'tls', 'login', '-c', url, '--ca-cert', '/etc/hostname']);
  expect(badCa.output).toBe(
    "error: '/etc/hostname' is not a PEM certificate (--ca-cert takes the CA's certificate, e.g. ca.pem)\n",
  );
  const both = await inTerminal(skyrc, ['-t', 'tls', 'login', '-c', url, '-k', '--ca-cert', caFile]);
  expect(both.output).toBe('error: --insecure (-k) and --ca-cert exclude each other\n');
});

test('-k skips the certificate check and is saved as insecure', async () => {
  const skyrc = tempSkyrc();
  const token = await pageToken(node.url, fake, 'alice');
  const login = await sky(skyrc, ['-t', 'k', 'login', '-c', url, '-k'], `${token}\n`);
  expect(login.code).toBe(0);
  expect(readSkyrc(skyrc).targets['k']?.insecure).toBe(true);
  const userinfo = await inTerminal(skyrc, ['-t', 'k', 'userinfo']);
  expect(userinfo.code).toBe(0);
  expect(userinfo.output).toContain('main/owner');
});
