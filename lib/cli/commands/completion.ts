import { SkyError } from '../../errors';
import { print, stringOption, type CommandSpec, type OptionSpec } from '../command';

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** Every flag of a command as the shell types it: `--name` and `-x`. */
const flagsOf = (options: Record<string, OptionSpec>): string[] =>
  Object.entries(options).flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]);

/** Single quotes for a shell word (fish and POSIX shells alike). */
const quoted = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

/**
 * bash (and zsh through bashcompinit): commands, each command's flags, and the saved targets after
 * -t/--target (read with `sky targets`, which prints no header when not on a terminal).
 */
function bash(commands: readonly CommandSpec[], globals: Record<string, OptionSpec>): string {
  const cases = commands
    .map(
      (c) =>
        `    ${[c.name, ...c.aliases].join('|')}) opts=${quoted([...flagsOf(c.options), ...flagsOf(globals)].join(' '))} ;;`,
    )
    .join('\n');
  return `# sky completion for bash: source <(sky completion --shell bash)
_sky() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" cmd="" opts="" i
  if [[ "$prev" == "-t" || "$prev" == "--target" ]]; then
    COMPREPLY=($(compgen -W "$(sky targets 2>/dev/null | awk '{print $1}')" -- "$cur"))
    return
  fi
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      -t | --target) ((i++)) ;;
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  case "$cmd" in
${cases}
    "") opts=${quoted([...commands.map((c) => c.name), ...flagsOf(globals)].join(' '))} ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _sky sky
`;
}

function zsh(commands: readonly CommandSpec[], globals: Record<string, OptionSpec>): string {
  return `# sky completion for zsh: source <(sky completion --shell zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(commands, globals).split('\n').slice(1).join('\n')}`;
}

function fish(commands: readonly CommandSpec[], globals: Record<string, OptionSpec>): string {
  const lines = ['# sky completion for fish: sky completion --shell fish | source', 'complete -c sky -f'];
  const flag = (name: string, o: OptionSpec, condition: string): string =>
    `complete -c sky${condition} -l ${name}${o.short ? ` -s ${o.short}` : ''}${o.type === 'string' ? ' -r' : ''} -d ${quoted(o.description)}`;
  for (const [name, o] of Object.entries(globals)) lines.push(flag(name, o, ''));
  lines.push(
    `complete -c sky -n '__fish_seen_argument -s t -l target' -a '(sky targets 2>/dev/null | string split -f1 " ")'`,
  );
  for (const c of commands) {
    lines.push(`complete -c sky -n __fish_use_subcommand -a ${c.name} -d ${quoted(c.summary)}`);
    const seen = ` -n ${quoted(`__fish_seen_subcommand_from ${[c.name, ...c.aliases].join(' ')}`)}`;
    for (const [name, o] of Object.entries(c.options)) lines.push(flag(name, o, seen));
  }
  return lines.join('\n') + '\n';
}

/** fly completion --shell: a script that completes sky's commands, flags and saved targets. */
export function completionCommand(
  commands: () => readonly CommandSpec[],
  globals: Record<string, OptionSpec>,
): CommandSpec {
  return {
    name: 'completion',
    aliases: [],
    summary: 'generate shell completion code',
    options: {
      shell: { type: 'string', value: 'SHELL', description: 'Shell type: bash, zsh or fish' },
    },
    async run(ctx, values) {
      const shell = stringOption(values, 'shell');
      if (shell === undefined)
        throw new SkyError('invalid_request', "the required flag `--shell' was not specified");
      if (!(SHELLS as readonly string[]).includes(shell)) {
        throw new SkyError('invalid_request', `unknown shell '${shell.slice(0, 40)}': use bash, zsh or fish`);
      }
      const make = { bash, zsh, fish }[shell as Shell];
      print(ctx, make(commands(), globals));
    },
  };
}
