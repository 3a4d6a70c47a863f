import { generateSigningKey } from '../../lib/tokens';
import { Vault } from '../../lib/tokens/vault';

const key = generateSigningKey();
const vault = new Vault(key);
const secret = 'upstream-access-token-0123456789';

test('seal/open round trip; the sealed form shows nothing of the secret and differs every time', () => {
  const one = vault.seal(secret, 'upstream alice');
  const two = vault.seal(secret, 'upstream alice');
  expect(one).not.toBe(two);
  expect(one).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
  expect(one).not.toContain(secret);
  expect(Buffer.from(one.split('.')[2] ?? '', 'base64url').toString('latin1')).not.toContain('upstream');
  expect(vault.open(one, 'upstream alice')).toBe(secret);
});

test('another node with the same signing key opens it; another key does not', () => {
  const sealed = vault.seal(secret, 'ctx');
  expect(new Vault(key).open(sealed, 'ctx')).toBe(secret);
  expect(() => new Vault(generateSigningKey()).open(sealed, 'ctx')).toThrow(
    expect.objectContaining({ code: 'invalid_grant' }),
  );
});

test('a value moved to another user (another context) does not open', () => {
  const sealed = vault.seal(secret, 'upstream alice');
  expect(() => vault.open(sealed, 'upstream mallory')).toThrow(/cannot be opened/);
});

test('any flipped bit, truncation or malformed value is refused', () => {
  const sealed = vault.seal(secret, 'ctx');
  const [version = '', iv = '', body = ''] = sealed.split('.');
  const flip = (s: string, i: number): string => {
    const bytes = Buffer.from(s, 'base64url');
    bytes[i % bytes.length] = (bytes[i % bytes.length] ?? 0) ^ 1;
    return bytes.toString('base64url');
  };
  const bad = [
    `${version}.${flip(iv, 0)}.${body}`,
    `${version}.${iv}.${flip(body, 0)}`,
    `${version}.${iv}.${flip(body, 40)}`,
    `${version}.${iv}.${body.slice(0, -4)}`,
    `v2.${iv}.${body}`,
    `${version}.${iv}`,
    '',
    'v1..',
    'garbage',
  ];
  for (const value of bad) expect(() => vault.open(value, 'ctx')).toThrow(/cannot be opened/);
});
