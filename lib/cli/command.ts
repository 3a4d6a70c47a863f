import { SkyError } from '../errors';
import type { Session } from './client';
import { CliExit, type CliIO, type Prompter } from './io';
import { loadTarget } from './skyrc';

/** What every command gets: the outside world, the prompts, ~/.skyrc and the global flags. */
export interface Context {
  io: CliIO;
  prompter: Prompter;
  /** Path of the .skyrc file. */
  file: string;
  /** -t/--target, when given. */
  target: string | undefined;
  /** fly prints table headers on a terminal, or when asked with --print-table-headers. */
  printHeaders: boolean;
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Placeholder of the value in the help text. */
  value?: string;
  description: string;
}

/** What util.parseArgs hands back for a command's options. */
export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface CommandSpec {
  name: string;
  aliases: string[];
  summary: string;
  options: Record<string, OptionSpec>;
  run(ctx: Context, values: Values): Promise<void>;
}

export function print(ctx: Context, text: string): void {
  ctx.io.stdout.write(text);
}

export function stringOption(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function booleanOption(values: Values, name: string): boolean {
  return values[name] === true;
}

export function listOption(values: Values, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** go-flags' wording, as fly prints it, for a missing required flag. */
export function requiredOption(values: Values, name: string, short: string): string {
  const value = stringOption(values, name);
  if (value === undefined || value === '') {
    throw new SkyError('invalid_request', `the required flag \`-${short}, --${name}' was not specified`);
  }
  return value;
}

/** fly's message when a command needs a target and none was given. */
export function noTarget(): CliExit {
  return new CliExit(
    'no target specified. specify the target with -t or log in like so:\n\n    sky -t (alias) login -c (url)\n',
  );
}

/** The -t target, loaded from .skyrc. */
export async function openSession(ctx: Context): Promise<Session> {
  if (!ctx.target) throw noTarget();
  return { name: ctx.target, file: ctx.file, target: await loadTarget(ctx.file, ctx.target) };
}
