import { z } from 'zod';
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

/** Where a setting of an options schema comes from besides the option itself (registered on its field). */
export interface SettingMeta {
  /** Concourse's variable for this setting. */
  env?: string;
  /** Its key in a dex connector's `config:`, or, with `dexEntry`, in the connector's entry itself (`name`). */
  dex?: string;
  dexEntry?: boolean;
  /** How a variable's text (and a dex value) is read: as it is (default), a number, a boolean, a list. */
  read?: 'string' | 'number' | 'boolean' | 'list';
}

/**
 * The sources of each field of an options schema: `field: z.string().register(SETTINGS, { env: … })`.
 * The environment and dex readers derive their mapping from it, so a setting is declared once.
 */
export const SETTINGS = z.registry<SettingMeta>();

/** A schema's fields with their registered sources (fields without any are left out). */
function registered(shape: z.ZodRawShape): [field: string, meta: SettingMeta][] {
  return Object.entries(shape).flatMap(([field, schema]) => {
    const meta = SETTINGS.get(schema);
    return meta ? [[field, meta] as [string, SettingMeta]] : [];
  });
}

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

  /** The fields of `shape` that have a variable (SETTINGS), each read by its kind. */
  fields(shape: z.ZodRawShape): SourcedFields {
    const fields: SourcedFields = {};
    for (const [field, { env, read = 'string' }] of registered(shape)) {
      if (env !== undefined) fields[field] = this[read](env);
    }
    return fields;
  }
}

/**
 * One entry of a dex YAML's `connectors:` list, as a connector reads it: `config:` keys (a string value
 * `$NAME` is read from the environment, as dex does), and the entry's own keys (`name`). Every value's
 * source is its YAML path (`dex.yaml: connectors[0].config.clientID`).
 */
export class DexConnectorSource {
  constructor(
    private readonly entry: Record<string, unknown> & { config: Record<string, unknown> },
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

  /** A text key of the entry itself, beside `config:` (dex's `name`: what its login page shows). */
  entryString(key: string): Sourced<string> | undefined {
    const raw = this.entry[key];
    return typeof raw === 'string' ? { value: raw, source: `${this.at}.${key}` } : undefined;
  }

  /** The fields of `shape` that have a dex key (SETTINGS), each read by its kind. */
  fields(shape: z.ZodRawShape): SourcedFields {
    const fields: SourcedFields = {};
    for (const [field, { dex, dexEntry, read }] of registered(shape)) {
      if (dex === undefined) continue;
      fields[field] = dexEntry
        ? this.entryString(dex)
        : read === 'boolean' || read === 'list'
          ? this[read](dex)
          : this.string(dex);
    }
    return fields;
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

/**
 * Settings merged from several sources, parsed with their schema (its defaults, refinements and
 * transforms): each problem is named by the source of the value it is about (`CONCOURSE_AUTH_DURATION:
 * …`), or by `fallback` for a value that was not set. null when any value is bad (the problems say why).
 */
export function parseSourced<S extends z.ZodType>(
  schema: S,
  fields: SourcedFields,
  problems: string[],
  fallback: (field: string) => string | undefined = () => undefined,
): z.output<S> | null {
  const raw = Object.fromEntries(
    Object.entries(fields).flatMap(([field, v]) => (v === undefined ? [] : [[field, v.value]])),
  );
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    const field = String(issue.path[0] ?? '');
    const source = fields[field]?.source ?? fallback(field);
    problems.push(source ? `${source}: ${issue.message}` : issue.message);
  }
  return null;
}

/**
 * A zod transform to an http(s) URL without credentials, query or fragment (and without a path unless
 * `allowPath`), the value quoted when it is not a URL at all.
 */
export const httpUrl =
  (allowPath: boolean) =>
  (value: string, ctx: z.RefinementCtx): URL => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: `'${value.slice(0, 100)}' is not an absolute URL` });
      return z.NEVER;
    }
    const problem =
      url.protocol !== 'http:' && url.protocol !== 'https:'
        ? 'must be an http or https URL'
        : url.username || url.password || url.search || url.hash
          ? 'must not carry credentials, a query or a fragment'
          : !allowPath && url.pathname !== '/'
            ? 'must not have a path'
            : null;
    if (problem === null) return url;
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  };

export const withoutSlash = (url: URL): string => url.href.replace(/\/+$/, '');
