import { SkyError } from '../errors';

/**
 * Where settings come from (SPEC §3): sky()'s options, Concourse's CONCOURSE_* variables and a dex-style
 * YAML file. sky's own settings and each connector's read their values through these, so every value
 * remembers its source and an error names the option, the variable or the YAML path.
 */

/** One setting's value and where it came from. */
export interface Sourced<T> {
  value: T;
  source: string;
}

/** A group of settings (a connector's), field by field; a later source replaces a field, not the group. */
export type SourcedFields = Record<string, Sourced<unknown> | undefined>;

const invalid = (message: string): SkyError => new SkyError('invalid_config', message);

/** A comma-separated list, trimmed, empty items dropped. */
export const list = (value: string): string[] =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');

export function parseBoolean(value: string, source: string): boolean {
  const v = value.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw invalid(`${source}: '${value.slice(0, 40)}' is not a boolean (use true or false)`);
}

/** The environment as settings: a variable that is empty counts as unset. */
export class EnvSource {
  constructor(private readonly env: Record<string, string | undefined>) {}

  /** The raw value, or undefined when unset or blank (for values that must not be trimmed). */
  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v;
  }

  string(name: string): Sourced<string> | undefined {
    const v = this.raw(name);
    return v === undefined ? undefined : { value: v.trim(), source: name };
  }

  number(name: string): Sourced<number> | undefined {
    const v = this.string(name);
    return v && { value: Number(v.value), source: name };
  }

  list(name: string): Sourced<string[]> | undefined {
    const v = this.string(name);
    return v && { value: list(v.value), source: name };
  }

  boolean(name: string): Sourced<boolean> | undefined {
    const v = this.string(name);
    return v && { value: parseBoolean(v.value, name), source: name };
  }
}

/**
 * One entry of a dex YAML's `connectors:` list, as a connector reads it: `config:` keys (a string value
 * `$NAME` is read from the environment, as dex does), and the entry's `name`. Every value's source is
 * its YAML path (`dex.yaml: connectors[0].config.clientID`).
 */
export class DexConnectorSource {
  constructor(
    private readonly entry: { name?: unknown; config: Record<string, unknown> },
    /** The YAML path of the entry: `dex.yaml: connectors[0]`. */
    readonly at: string,
    private readonly env: Record<string, string | undefined>,
  ) {}

  path(key: string): string {
    return `${this.at}.config.${key}`;
  }

  string(key: string): Sourced<string> | undefined {
    const raw = this.entry.config[key];
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw !== 'string') throw invalid(`${this.path(key)} must be a string`);
    const ref = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(raw);
    if (!ref) return { value: raw, source: this.path(key) };
    const value = this.env[ref[1] as string];
    if (value === undefined || value === '')
      throw invalid(`${this.path(key)}: environment variable ${ref[1]} is not set`);
    return { value, source: this.path(key) };
  }

  boolean(key: string): Sourced<boolean> | undefined {
    const raw = this.entry.config[key];
    if (typeof raw === 'boolean') return { value: raw, source: this.path(key) };
    const text = this.string(key);
    return text && { value: parseBoolean(text.value, text.source), source: text.source };
  }

  list(key: string): Sourced<string[]> | undefined {
    const raw = this.entry.config[key];
    if (raw === undefined || raw === null) return undefined;
    if (!Array.isArray(raw) || !raw.every((t) => typeof t === 'string'))
      throw invalid(`${this.path(key)} must be a list of strings`);
    return { value: raw, source: this.path(key) };
  }

  /** The entry's `name` (what dex's login page calls the connector). */
  name(): Sourced<string> | undefined {
    return typeof this.entry.name === 'string'
      ? { value: this.entry.name, source: `${this.at}.name` }
      : undefined;
  }
}

/** A whole dex YAML document, for settings dex keeps outside `connectors:` (its `staticPasswords`). */
export interface DexDocument {
  doc: Record<string, unknown>;
  /** The file, for sources: `dex.yaml`. */
  file: string;
  env: Record<string, string | undefined>;
}

/** An option object's fields, each sourced as `option <key>.<field>`. */
export function optionFields<T extends object>(
  value: T,
  key: string,
): { [K in keyof T]?: Sourced<NonNullable<T[K]>> | undefined } {
  const fields: { [K in keyof T]?: Sourced<NonNullable<T[K]>> | undefined } = {};
  for (const field of Object.keys(value) as (keyof T & string)[]) {
    const v = value[field];
    if (v !== undefined && v !== null) fields[field] = { value: v, source: `option ${key}.${field}` };
  }
  return fields;
}

/** An http(s) URL without credentials, query or fragment (and without a path unless `allowPath`). */
export function httpUrl(s: Sourced<string>, problems: string[], allowPath: boolean): URL | null {
  let url: URL;
  try {
    url = new URL(s.value);
  } catch {
    problems.push(`${s.source}: '${s.value.slice(0, 100)}' is not an absolute URL`);
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    problems.push(`${s.source}: must be an http or https URL`);
  else if (url.username || url.password || url.search || url.hash)
    problems.push(`${s.source}: must not carry credentials, a query or a fragment`);
  else if (!allowPath && url.pathname !== '/') problems.push(`${s.source}: must not have a path`);
  else return url;
  return null;
}

export const withoutSlash = (url: URL): string => url.href.replace(/\/+$/, '');
