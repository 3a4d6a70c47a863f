import { readFileSync } from 'node:fs';
import { CONNECTORS } from '../connectors';
import { parseYamlText } from '../yaml';
import { SkyError } from '../errors';
import type { Layered } from './options';
import { DexConnectorSource, type SourcedFields } from './sources';

const fail = (message: string): never => {
  throw new SkyError('invalid_config', message);
};

/**
 * dex's `expiry:` block, as dex reads it with Go's durations: `idTokens` is the token lifetime (Concourse
 * sets dex's IDTokensValidFor from CONCOURSE_AUTH_DURATION), `refreshTokens.absoluteLifetime` the refresh
 * lifetime; dex's other expiry keys have no counterpart in sky and are ignored like other dex keys.
 */
function applyExpiry(layered: Layered, expiry: unknown, file: string): void {
  if (expiry === undefined || expiry === null) return;
  const mapping = (value: unknown, at: string): Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : fail(`${file}: ${at} must be a mapping`);
  const text = (value: unknown, at: string): string | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') return fail(`${file}: ${at} must be a duration string such as 24h`);
    return value;
  };
  const e = mapping(expiry, 'expiry');
  const idTokens = text(e['idTokens'], 'expiry.idTokens');
  if (idTokens !== undefined) layered.authDuration = { value: idTokens, source: `${file}: expiry.idTokens` };
  if (e['refreshTokens'] === undefined || e['refreshTokens'] === null) return;
  const at = 'expiry.refreshTokens.absoluteLifetime';
  const lifetime = text(mapping(e['refreshTokens'], 'expiry.refreshTokens')['absoluteLifetime'], at);
  if (lifetime !== undefined) layered.refreshDuration = { value: lifetime, source: `${file}: ${at}` };
}

/**
 * SPEC §3 source 3: a dex-style YAML file. Each `connectors:` entry goes to the registered connector of
 * its `type`, which reads its `config:` (a value `$NAME` is read from the environment); a connector may
 * also read settings dex keeps outside the list (`staticPasswords`). `expiry:` works as above, and an
 * entry's `redirectURI` is checked against the callback URL; dex's other keys are ignored.
 */
export function applyDexYaml(layered: Layered, file: string, env: Record<string, string | undefined>): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return fail(`SKY_CONFIG: cannot read '${file}': ${(err as Error).message}`);
  }
  const parsed = parseYamlText(text);
  if ('problem' in parsed) return fail(`SKY_CONFIG: '${file}' is not valid YAML: ${parsed.problem}`);
  const doc = parsed.doc;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    return fail(`SKY_CONFIG: '${file}' is not a mapping of dex settings`);
  const settings = doc as Record<string, unknown>;
  const connectors = settings['connectors'] ?? [];
  if (!Array.isArray(connectors)) return fail(`${file}: connectors must be a list`);
  applyExpiry(layered, settings['expiry'], file);

  const read = new Map<string, SourcedFields>();
  const merge = (key: string, fields: SourcedFields): void => {
    const defined = Object.entries(fields).filter(([, v]) => v !== undefined);
    if (defined.length > 0) read.set(key, { ...read.get(key), ...Object.fromEntries(defined) });
  };
  const types = CONNECTORS.flatMap((m) => (m.settings.dex?.type ? [m.settings.dex.type] : []));
  const seen = new Set<string>();
  connectors.forEach((entry: unknown, i) => {
    const at = `${file}: connectors[${i}]`;
    const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    const module = CONNECTORS.find(
      (m) => m.settings.dex?.type !== undefined && m.settings.dex.type === e['type'],
    );
    const dex = module?.settings.dex;
    if (!module || !dex?.fromConnector)
      return fail(
        `SKY_CONFIG: connector type '${String(e['type'])}' is not supported (sky speaks ${types.join(', ')})`,
      );
    if (seen.has(module.id))
      return fail(`${at}: a second ${String(e['type'])} connector (sky takes one of each type)`);
    seen.add(module.id);
    const config = e['config'];
    if (typeof config !== 'object' || config === null || Array.isArray(config))
      return fail(`${at}.config must be a mapping`);
    const source = new DexConnectorSource({ ...e, config: config as Record<string, unknown> }, at, env);
    const redirectUri = source.string('redirectURI');
    if (redirectUri) layered.redirectUri = redirectUri;
    merge(module.settings.key, dex.fromConnector(source));
  });
  for (const module of CONNECTORS) {
    const dex = module.settings.dex;
    if (dex?.fromDocument) merge(module.settings.key, dex.fromDocument({ doc: settings, file, env }));
  }
  if (read.size === 0)
    return fail(`SKY_CONFIG: '${file}' configures no connector (its connectors: list is empty)`);
  for (const [key, fields] of read) layered.connectors[key] = { ...layered.connectors[key], ...fields };
}
