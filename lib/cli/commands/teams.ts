import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { CliFlag } from '../../connector';
import { CONNECTORS } from '../../connectors';
import { SkyError } from '../../errors';
import {
  kindOfEntry,
  parseRolesYaml,
  ROLES,
  rolesYamlOf,
  teamAuthFromFlags,
  validateTeamName,
  type RoleMembers,
  type TeamAuth,
} from '../../teams/auth';
import { callApi, expectJson, serverError, type Session } from '../client';
import {
  booleanOption,
  listOption,
  openSession,
  print,
  requiredOption,
  stringOption,
  type CommandSpec,
  type Context,
  type Values,
} from '../command';
import { CliExit, renderTable } from '../io';
import { entryWords, renderChanges, teamChanges } from '../team-diff';

/** A team as the API shows it. */
interface TeamView {
  name: string;
  auth: TeamAuth;
}

const teamPath = (team: string): string => `/api/v1/teams/${encodeURIComponent(team)}`;

function json(ctx: Context, value: unknown): void {
  print(ctx, JSON.stringify(value, null, 2) + '\n');
}

/** A user entry with its kind, as it matches (SPEC §5.2): `bitbucket-cloud:bob (username)`. */
const withKind = (entry: string): string => `${entry} (${kindOfEntry(entry)})`;

/**
 * fly's "name/role  users  groups" rows; "none" for an empty list, "all" when both are empty. With
 * `kinds`, each user entry says which kind of id it is.
 */
function roleRows(team: TeamView, kinds = false): string[][] {
  return Object.entries(team.auth).map(([role, members]: [string, RoleMembers | undefined]) => {
    const users = (members?.users ?? []).map((u) => (kinds ? withKind(u) : u));
    const groups = members?.groups ?? [];
    return [
      `${team.name}/${role}`,
      users.length > 0 ? users.join(',') : groups.length > 0 ? 'none' : 'all',
      groups.length > 0 ? groups.join(',') : 'none',
    ];
  });
}

/** `-c -`: the roles YAML comes from stdin. */
const STDIN = '-';

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The auth config from -c roles.yml (`-c -`: stdin), or from the flags (every user and team an owner),
 * as fly builds it.
 */
async function authFromOptions(ctx: Context, values: Values): Promise<TeamAuth> {
  // fly skips empty flag values ("--bitbucket-cloud-user ''"), then finds no members.
  const given = (flag: CliFlag | undefined): string[] =>
    flag ? listOption(values, flag.name).filter((v) => v.trim() !== '') : [];
  const byConnector = Object.fromEntries(
    CONNECTORS.map((c) => [c.id, { users: given(c.entries.userFlag), groups: given(c.entries.groupFlag) }]),
  );
  const anyFlag = Object.values(byConnector).some((e) => e.users.length > 0 || e.groups.length > 0);
  const config = stringOption(values, 'config');
  if (config === undefined) return teamAuthFromFlags(byConnector);
  if (anyFlag) {
    const flags = memberFlags().map((f) => `--${f.name}`);
    const named = flags.length > 1 ? `${flags.slice(0, -1).join(', ')} or ${flags.at(-1)}` : flags.join('');
    throw new SkyError(
      'invalid_request',
      `--config cannot be combined with ${named}: put every user and team in the roles file`,
    );
  }
  if (config === STDIN) return parseRolesYaml(await readAll(ctx.io.stdin), '<stdin>');
  let text: string;
  try {
    text = await readFile(config, 'utf8');
  } catch (err) {
    throw new SkyError(
      'invalid_request',
      `could not read the config file '${config}': ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  // A syntax error names the file (set-team may be one step of a script that applies many); the
  // checks of the roles say what fly says.
  return parseRolesYaml(text, config);
}

/** fly's rendering of the config about to be applied. */
function describeTeam(name: string, auth: TeamAuth): string {
  const lines = [`setting team: ${name}`];
  const list = (entries: string[]): string[] =>
    entries.length > 0 ? entries.map((e) => `  - ${e}`) : ['    none'];
  for (const role of Object.keys(auth).sort()) {
    const members = auth[role as keyof TeamAuth];
    lines.push(
      '',
      `role ${role}:`,
      '  users:',
      ...list(members?.users ?? []),
      '',
      '  groups:',
      ...list(members?.groups ?? []),
    );
  }
  return lines.join('\n') + '\n';
}

async function confirmed(ctx: Context, question: string): Promise<string> {
  return ((await ctx.prompter.ask(question)) ?? '').trim();
}

/** The team's config as the server has it now; null when there is no such team (404 team_not_found). */
async function currentAuth(session: Session, name: string): Promise<TeamAuth | null> {
  const res = await callApi(session, teamPath(name));
  if (res.status === 404 && (res.headers.get('content-type') ?? '').includes('json')) {
    const body = (await res
      .clone()
      .json()
      .catch(() => null)) as { error?: unknown } | null;
    if (body?.error === 'team_not_found') {
      await res.body?.cancel();
      return null;
    }
  }
  return (await expectJson<TeamView>(res)).auth;
}

/**
 * fly set-team: validate locally, read the team's current config, show the new one and what it changes
 * ("new team", the entries added and removed per role, or "no changes": then nothing is written),
 * confirm, PUT; "team created" or "team updated". --dry-run stops after showing.
 */
async function setTeam(ctx: Context, values: Values): Promise<void> {
  const name = validateTeamName(requiredOption(values, 'team-name', 'n'));
  const dryRun = booleanOption(values, 'dry-run');
  const nonInteractive = booleanOption(values, 'non-interactive');
  if (stringOption(values, 'config') === STDIN && !dryRun && !nonInteractive) {
    throw new SkyError(
      'invalid_request',
      '-c - reads the roles YAML from stdin, so stdin cannot answer the confirmation: add --non-interactive to apply it, or --dry-run to only show the changes',
    );
  }
  const session = await openSession(ctx);
  const auth = await authFromOptions(ctx, values);
  const current = await currentAuth(session, name);
  print(ctx, describeTeam(name, auth));
  const changes = current ? teamChanges(current, auth) : null;
  if (changes?.length === 0) {
    print(ctx, '\nno changes\n');
    return;
  }
  print(ctx, changes ? `\n${renderChanges(changes)}` : '\nnew team\n');
  if (dryRun) return;
  if (!nonInteractive) {
    const answer = (await confirmed(ctx, '\napply team configuration? [yN]: ')).toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new CliExit('bailing out\n');
  }
  const res = await callApi(session, teamPath(name), {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth }),
  });
  if (res.status === 201) print(ctx, 'team created\n');
  else if (res.ok) print(ctx, 'team updated\n');
  else throw await serverError(res);
  await res.body?.cancel();
}

/** fly teams [-d]: the teams the caller may see (all of them for an admin). */
async function listTeams(ctx: Context, values: Values): Promise<void> {
  const session = await openSession(ctx);
  const teams = await expectJson<TeamView[]>(await callApi(session, '/api/v1/teams'));
  if (booleanOption(values, 'json')) return json(ctx, teams);
  if (booleanOption(values, 'details')) {
    print(
      ctx,
      renderTable(
        ['name/role', 'users', 'groups'],
        teams.flatMap((t) => roleRows(t)),
        ctx.printHeaders,
      ),
    );
  } else {
    print(
      ctx,
      renderTable(
        ['name'],
        teams.map((t) => [t.name]),
        ctx.printHeaders,
      ),
    );
  }
}

const OUTPUTS = ['yaml', 'json'] as const;
type Output = (typeof OUTPUTS)[number];

/** -o/--output (and -j, which is -o json); undefined: fly's table. */
function outputOf(values: Values): Output | undefined {
  const output = stringOption(values, 'output');
  const asJson = booleanOption(values, 'json');
  if (output === undefined) return asJson ? 'json' : undefined;
  if (!(OUTPUTS as readonly string[]).includes(output)) {
    throw new SkyError(
      'invalid_request',
      `invalid value '${output.slice(0, 40)}' for -o/--output: use ${OUTPUTS.join(' or ')}`,
    );
  }
  if (asJson && output !== 'json') {
    throw new SkyError('invalid_request', `-j/--json cannot be combined with -o ${output}`);
  }
  return output as Output;
}

/**
 * What set-team would change if given the roles YAML of `auth` (nothing, but for entries the YAML
 * cannot say: those of a connector this sky does not know), as warning lines.
 */
function yamlWarnings(auth: TeamAuth, yaml: string): string[] {
  let back: TeamAuth;
  try {
    back = parseRolesYaml(yaml);
  } catch (err) {
    return [`warning: set-team -c will refuse this roles YAML: ${(err as Error).message}`];
  }
  return teamChanges(auth, back).flatMap(({ role, entries }) =>
    entries.map(
      ({ sign, list, entry }) =>
        `warning: role ${role}: ${entryWords(list, entry)} ${sign === '-' ? 'is left out of' : 'would be added by'} this roles YAML`,
    ),
  );
}

/** fly get-team -n: one team's roles; -o yaml: as the roles YAML set-team -c reads back unchanged. */
async function getTeam(ctx: Context, values: Values): Promise<void> {
  const name = validateTeamName(requiredOption(values, 'team-name', 'n'));
  const output = outputOf(values);
  const session = await openSession(ctx);
  const team = await expectJson<TeamView>(await callApi(session, teamPath(name)));
  if (output === 'json') return json(ctx, team);
  if (output === 'yaml') {
    const yaml = rolesYamlOf(team.auth);
    for (const warning of yamlWarnings(team.auth, yaml)) ctx.io.stderr.write(`${warning}\n`);
    return print(ctx, yaml);
  }
  print(ctx, renderTable(['name/role', 'users', 'groups'], roleRows(team, true), ctx.printHeaders));
}

/** fly destroy-team -n: asks for the team name again unless --non-interactive. */
async function destroyTeam(ctx: Context, values: Values): Promise<void> {
  const name = validateTeamName(requiredOption(values, 'team-name', 'n'));
  const session = await openSession(ctx);
  print(ctx, `!!! this will remove all data for team \`${name}\`\n\n`);
  if (!booleanOption(values, 'non-interactive')) {
    const typed = await confirmed(ctx, 'are you sure? please type the team name to continue: ');
    if (typed !== name) throw new CliExit('incorrect team name; bailing out\n');
  }
  const res = await callApi(session, teamPath(name), { method: 'DELETE' });
  if (!res.ok) {
    const err = await serverError(res);
    throw new CliExit(`\ncould not destroy \`${name}\`\n\n${err.message}\n`);
  }
  await res.body?.cancel();
  print(ctx, `\n\`${name}\` deleted\n`);
}

const teamName = (description: string) =>
  ({ type: 'string', short: 'n', value: 'TEAM', description }) as const;
/** Every connector's set-team flags, in the registry's order. */
const memberFlags = (): CliFlag[] =>
  CONNECTORS.flatMap((c) => [c.entries.userFlag, ...(c.entries.groupFlag ? [c.entries.groupFlag] : [])]);

const nonInteractive = (description: string) => ({ type: 'boolean', description }) as const;

export const setTeamCommand: CommandSpec = {
  name: 'set-team',
  aliases: ['st'],
  summary: 'Create or modify a team to have the given credentials',
  options: {
    'team-name': teamName('The team to create or modify'),
    'non-interactive': nonInteractive('Force apply configuration'),
    'dry-run': {
      type: 'boolean',
      description: 'Show the configuration and what it changes, then exit without applying it',
    },
    ...Object.fromEntries(
      memberFlags().map((f) => [
        f.name,
        { type: 'string', multiple: true, value: f.value, description: f.description } as const,
      ]),
    ),
    config: {
      type: 'string',
      short: 'c',
      value: 'FILE',
      description: `Roles YAML (- for stdin, with --non-interactive or --dry-run): roles: [{name, ${CONNECTORS.map((c) => `${c.entries.yamlKey}: {users${c.entries.yamlGroups ? `, ${c.entries.yamlGroups}` : ''}}`).join(', ')}}] (roles: ${ROLES.join(', ')})`,
    },
  },
  run: setTeam,
};

export const teamsCommand: CommandSpec = {
  name: 'teams',
  aliases: ['t'],
  summary: 'List the configured teams',
  options: {
    details: { type: 'boolean', short: 'd', description: 'Print authentication configuration' },
    json: { type: 'boolean', short: 'j', description: 'Print command result as JSON' },
  },
  run: listTeams,
};

export const getTeamCommand: CommandSpec = {
  name: 'get-team',
  aliases: ['gt'],
  summary: 'Show team configuration',
  options: {
    'team-name': teamName('Get configuration of this team'),
    json: { type: 'boolean', short: 'j', description: 'Print command result as JSON' },
    output: {
      type: 'string',
      short: 'o',
      value: 'FORMAT',
      description: 'Print the team as yaml (a roles file for set-team -c) or json',
    },
  },
  run: getTeam,
};

export const destroyTeamCommand: CommandSpec = {
  name: 'destroy-team',
  aliases: ['dt'],
  summary: 'Destroy a team and delete all of its data',
  options: {
    'team-name': teamName('The team to delete'),
    'non-interactive': nonInteractive('Force apply configuration'),
  },
  run: destroyTeam,
};
