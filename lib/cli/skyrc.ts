import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { parseYamlText } from '../yaml';
import { SkyError } from '../errors';

/** fly's .flyrc token: `{type: bearer, value: <jwt>}`. */
export interface TargetToken {
  type: string;
  value: string;
}

/** One target of ~/.skyrc, in .flyrc's shape plus the refresh token fly does not have. */
export interface Target {
  api: string;
  team: string;
  token?: TargetToken;
  refresh_token?: string;
  /** fly's `insecure`: TLS certificates of this target are not checked (`sky login -k`). */
  insecure?: boolean;
  /** fly's `ca_cert`: the PEM of the CA that signed this target's certificate (`sky login --ca-cert`). */
  ca_cert?: string;
}

/** Keys sky does not know ride along untouched. */
export type StoredTarget = Target & Record<string, unknown>;
export type Targets = Record<string, StoredTarget>;

/** $SKYRC when set (tests, several configs), else ~/.skyrc under $HOME (os.homedir()). */
export function skyrcPath(env: Readonly<Record<string, string | undefined>>): string {
  const explicit = env['SKYRC'];
  if (explicit) return path.resolve(explicit);
  return path.join(env['HOME'] || os.homedir(), '.skyrc');
}

const invalidRc = (file: string, detail: string): SkyError =>
  new SkyError('invalid_config', `in the file '${file}': ${detail}`);

function asRecord(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/** Reads every target; a missing file is an empty one. */
export async function loadTargets(file: string): Promise<Targets> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new SkyError('invalid_config', `could not read '${file}': ${(err as Error).message}`, {
      cause: err,
    });
  }
  const parsed = parseYamlText(text);
  if ('problem' in parsed) throw invalidRc(file, parsed.problem);
  const { doc } = parsed;
  if (doc === null || doc === undefined) return {};
  const root = asRecord(doc);
  const rawTargets = root ? (root['targets'] ?? {}) : undefined;
  const targetsRecord = asRecord(rawTargets);
  if (!targetsRecord) throw invalidRc(file, 'expected a mapping `targets: {name: {api, team, token}}`');
  // Null prototype: a target may be called anything ('toString', '__proto__') and is never inherited.
  const targets = Object.create(null) as Targets;
  for (const [name, raw] of Object.entries(targetsRecord)) {
    const entry = asRecord(raw);
    if (!entry || typeof entry['api'] !== 'string' || entry['api'] === '') {
      throw invalidRc(file, `target '${name}' has no api URL`);
    }
    const { token, refresh_token: refreshToken, team, insecure, ca_cert: caCert, ...rest } = entry;
    const target: StoredTarget = {
      ...rest,
      api: entry['api'],
      team: typeof team === 'string' && team ? team : 'main',
    };
    if (insecure === true) target.insecure = true;
    if (typeof caCert === 'string' && caCert !== '') target.ca_cert = caCert;
    const tok = asRecord(token);
    if (tok && typeof tok['type'] === 'string' && typeof tok['value'] === 'string' && tok['value'] !== '') {
      target.token = { type: tok['type'], value: tok['value'] };
    }
    if (typeof refreshToken === 'string' && refreshToken !== '') target.refresh_token = refreshToken;
    targets[name] = target;
  }
  return targets;
}

/** The named target, or fly's "unknown target" error. */
export async function loadTarget(file: string, name: string): Promise<StoredTarget> {
  const target = (await loadTargets(file))[name];
  if (!target) throw new SkyError('invalid_request', `unknown target: ${name}`);
  return target;
}

/**
 * Read-modify-write of the file under one rule: it holds bearer and refresh tokens, so it is written
 * with mode 0600 (a looser file is tightened), through a temporary file and a rename, never half-written.
 */
export async function updateTargets(file: string, change: (targets: Targets) => void): Promise<Targets> {
  const targets = await loadTargets(file);
  change(targets);
  const real = await fs.realpath(file).catch(() => file);
  const temp = `${real}.${randomBytes(6).toString('hex')}.tmp`;
  const text = stringifyYaml({ targets }, { lineWidth: 0 });
  try {
    await fs.writeFile(temp, text, { mode: 0o600, flag: 'wx' });
    await fs.chmod(temp, 0o600); // the umask may not widen, but a 0600 is what we promise
    await fs.rename(temp, real);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw new SkyError('invalid_config', `could not write '${real}': ${(err as Error).message}`, {
      cause: err,
    });
  }
  return targets;
}
