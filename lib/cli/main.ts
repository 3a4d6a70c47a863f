#!/usr/bin/env node
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SkyError } from '../errors';
import type { CommandSpec, Context, OptionSpec } from './command';
import { auditCommand } from './commands/audit';
import { loginCommand } from './commands/login';
import { completionCommand } from './commands/completion';
import { logoutCommand, userinfoCommand } from './commands/session';
import {
  deleteTargetCommand,
  editTargetCommand,
  renameTargetCommand,
  statusCommand,
  targetsCommand,
} from './commands/targets';
import { destroyTeamCommand, getTeamCommand, setTeamCommand, teamsCommand } from './commands/teams';
import { createTokenCommand, revokeTokenCommand, tokensCommand } from './commands/tokens';
import { CliExit, Prompter, type CliIO } from './io';
import { skyrcPath } from './skyrc';
import { VERSION } from '../version';

/** fly's application options, accepted before or after the command. */
const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  target: { type: 'string', short: 't', value: 'TARGET', description: 'Target name (saved in ~/.skyrc)' },
  'print-table-headers': { type: 'boolean', description: 'Print table headers even when not on a terminal' },
  help: { type: 'boolean', short: 'h', description: 'Show this help message' },
  version: { type: 'boolean', short: 'v', description: 'Print the version of sky and exit' },
};

/** The commands of SPEC §9, each a row of data: name, aliases, flags, handler. */
export const COMMANDS: readonly CommandSpec[] = [
  loginCommand,
  logoutCommand,
  statusCommand,
  setTeamCommand,
  teamsCommand,
  getTeamCommand,
  destroyTeamCommand,
  createTokenCommand,
  tokensCommand,
  revokeTokenCommand,
  auditCommand,
  userinfoCommand,
  targetsCommand,
  deleteTargetCommand,
  renameTargetCommand,
  editTargetCommand,
  completionCommand(() => COMMANDS, GLOBAL_OPTIONS),
];

function optionLines(options: Record<string, OptionSpec>): string[] {
  const flags = Object.entries(options).map(([name, o]) => {
    const short = o.short ? `-${o.short}, ` : '    ';
    return [`  ${short}--${name}${o.value ? `=${o.value}` : ''}`, o.description] as const;
  });
  const width = Math.max(...flags.map(([f]) => f.length)) + 2;
  return flags.map(([f, d]) => f.padEnd(width) + d);
}

function usage(command?: CommandSpec): string {
  if (command) {
    const lines = [
      `Usage:\n  sky [OPTIONS] ${command.name} [${command.name}-OPTIONS]\n`,
      `${command.summary}\n`,
    ];
    lines.push('Application Options:', ...optionLines(GLOBAL_OPTIONS), '');
    if (Object.keys(command.options).length > 0) {
      lines.push(`[${command.name} command options]`, ...optionLines(command.options), '');
    }
    return lines.join('\n');
  }
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 4;
  return [
    'Usage:\n  sky [OPTIONS] <command>\n',
    'Application Options:',
    ...optionLines(GLOBAL_OPTIONS),
    '\nAvailable commands:',
    ...COMMANDS.map(
      (c) =>
        `  ${c.name.padEnd(width)}${c.summary}${c.aliases.length > 0 ? ` (aliases: ${c.aliases.join(', ')})` : ''}`,
    ),
    '',
  ].join('\n');
}

/** The first argument that is neither a flag nor the value of -t. */
function commandIndex(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') return -1;
    if (arg === '-t' || arg === '--target') i++;
    else if (!arg.startsWith('-')) return i;
  }
  return -1;
}

/** util.parseArgs' failures in go-flags' words, as fly prints them. */
function flagError(err: unknown, command: string): SkyError {
  const { code, message } = err as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(message ?? '')?.[1]?.replace(/ <value>$/, '') ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    return new SkyError(
      'invalid_request',
      `unknown flag \`${quoted}' for sky ${command}; see sky ${command} --help`,
    );
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return new SkyError(
      'invalid_request',
      message?.includes('does not take an argument')
        ? `flag \`${quoted}' does not take a value`
        : `expected argument for flag \`${quoted}'`,
    );
  }
  return new SkyError('invalid_request', message ?? String(err));
}

function parse(argv: string[], options: Record<string, OptionSpec>, command: string) {
  const config: ParseArgsConfig['options'] = {};
  for (const [name, { type, short, multiple }] of Object.entries(options)) {
    config[name] = { type, ...(short ? { short } : {}), ...(multiple ? { multiple } : {}) };
  }
  try {
    return parseArgs({ args: argv, options: config, strict: true, allowPositionals: true });
  } catch (err) {
    throw flagError(err, command);
  }
}

async function dispatch(argv: string[], io: CliIO, prompter: Prompter): Promise<void> {
  const index = commandIndex(argv);
  const name = index === -1 ? undefined : argv[index];
  const command = COMMANDS.find((c) => c.name === name || c.aliases.includes(name ?? ''));
  if (name !== undefined && !command) {
    throw new SkyError(
      'invalid_request',
      `unknown command \`${name}'; run sky --help for the list of commands`,
    );
  }
  const rest = index === -1 ? argv : [...argv.slice(0, index), ...argv.slice(index + 1)];
  const parsed = parse(rest, { ...GLOBAL_OPTIONS, ...(command?.options ?? {}) }, command?.name ?? '');
  const values = parsed.values;
  if (values['version'] === true) {
    io.stdout.write(VERSION + '\n');
    return;
  }
  if (!command || values['help'] === true) {
    io.stdout.write(usage(command));
    return;
  }
  if (parsed.positionals.length > 0) {
    throw new SkyError('invalid_request', `unexpected argument [${parsed.positionals.join(', ')}]`);
  }
  const target = values['target'];
  const ctx: Context = {
    io,
    prompter,
    file: skyrcPath(io.env),
    target: typeof target === 'string' && target !== '' ? target : undefined,
    printHeaders: values['print-table-headers'] === true || io.stdout.isTTY === true,
  };
  await command.run(ctx, values);
}

/** Writes what went wrong, fly-style (`error: …`, never a stack trace), and picks the exit code. */
function report(io: CliIO, err: unknown): number {
  if (err instanceof CliExit) {
    if (err.message) io.stderr.write(err.message.endsWith('\n') ? err.message : err.message + '\n');
    return err.exitCode;
  }
  io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  if (io.env['SKY_DEBUG'] && err instanceof Error && err.stack) io.stderr.write(err.stack + '\n');
  return 1;
}

/** The whole CLI: argv (without node and the script) and the outside world in, an exit code out. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const prompter = new Prompter(io);
  try {
    await dispatch(argv, io, prompter);
    return 0;
  } catch (err) {
    return report(io, err);
  } finally {
    prompter.close();
  }
}

if (require.main === module) {
  // `sky teams | head` closes the pipe early: nothing to report.
  process.stdout.on('error', () => undefined);
  void run(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  }).then((code) => {
    process.exitCode = code;
  });
}
