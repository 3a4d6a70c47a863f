import { SkyError } from '../../errors';
import { validateTeamName } from '../../teams/auth';
import { isAutomationToken, peerOf, probeAutomation, send } from '../client';
import {
  booleanOption,
  openSession,
  print,
  requiredOption,
  stringOption,
  type CommandSpec,
  type Context,
  type Values,
} from '../command';
import { CliExit, renderTable } from '../io';
import { loadTargets, updateTargets, type TargetToken } from '../skyrc';
import { parseApiUrl } from './login';

/** The token's `exp` in seconds, or null when the token is not a JWT that has one. */
function expOf(token: TargetToken): number | null {
  try {
    const payload = JSON.parse(Buffer.from(token.value.split('.')[1] ?? '', 'base64url').toString()) as {
      exp?: unknown;
    };
    return typeof payload.exp === 'number' ? payload.exp : null;
  } catch {
    return null;
  }
}

/** The token's `exp` as fly shows it (RFC 1123, UTC), or "n/a". */
export function expiry(token: TargetToken | undefined): string {
  if (!token?.value) return 'n/a';
  if (isAutomationToken(token.value)) return 'n/a: automation token';
  const exp = expOf(token);
  return exp === null ? 'n/a: invalid token' : new Date(exp * 1000).toUTCString().replace('GMT', 'UTC');
}

/** fly targets: every saved target, its URL, team and token expiry. */
async function listTargets(ctx: Context): Promise<void> {
  const targets = await loadTargets(ctx.file);
  const rows = Object.entries(targets).map(([name, t]) => [name, t.api, t.team, expiry(t.token)]);
  print(ctx, renderTable(['name', 'url', 'team', 'expiry'], rows, ctx.printHeaders));
}

/** fly status: whether the saved token is still accepted by the node (nothing is refreshed or saved). */
async function status(ctx: Context): Promise<void> {
  const session = await openSession(ctx);
  const token = session.target.token?.value;
  const again = (why: string): CliExit =>
    new CliExit(`please login again.\n\ntoken validation failed with error: ${why}\n`);
  if (!token) throw again('no token is saved for this target');
  if (isAutomationToken(token)) {
    // No person behind it (GET /api/v1/user refuses it): its team's viewer route says whether it works.
    const { team } = session.target;
    const probed = await probeAutomation(session);
    if (probed === 401) {
      throw again(`the node refuses the automation token (revoked, expired, or team '${team}' was deleted)`);
    }
    if (probed === 403) throw again(`the automation token is not a token of team '${team}'`);
    if (probed !== 200) throw new SkyError('upstream_error', `${session.target.api} answered ${probed}`);
    print(ctx, `logged in successfully with an automation token of team '${team}'\n`);
    return;
  }
  const res = await send(peerOf(session), `${session.target.api}/api/v1/user`, {
    headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
  });
  await res.body?.cancel();
  if (res.status === 401) {
    const exp = session.target.token ? expOf(session.target.token) : null;
    throw again(
      exp === null || exp * 1000 > Date.now()
        ? 'the node refuses the token (revoked, or signed with a key it no longer knows)'
        : `the token expired on ${expiry(session.target.token)}`,
    );
  }
  if (!res.ok) throw new SkyError('upstream_error', `${session.target.api} answered ${res.status}`);
  print(ctx, 'logged in successfully\n');
}

/** A new target name: what -t takes back later (not empty, not a flag). */
function targetName(raw: string): string {
  if (
    raw.trim() === '' ||
    raw.startsWith('-') ||
    !/^[\x21-\x7e\u00a0-\uffff]+$/.test(raw) ||
    raw.length > 100
  ) {
    throw new SkyError(
      'invalid_request',
      `invalid target name '${raw.slice(0, 100)}': 1-100 characters without spaces or control characters, not starting with '-'`,
    );
  }
  return raw;
}

/** fly delete-target: forgets a target (its token is not revoked: `logout` does that), or -a all of them. */
async function deleteTarget(ctx: Context, values: Values): Promise<void> {
  const all = booleanOption(values, 'all');
  if (all === Boolean(ctx.target))
    throw new SkyError('invalid_request', 'must specify either --target or --all');
  if (all) {
    await updateTargets(ctx.file, (targets) => {
      for (const name of Object.keys(targets)) delete targets[name];
    });
    print(ctx, 'deleted all targets\n');
    return;
  }
  const session = await openSession(ctx);
  await updateTargets(ctx.file, (targets) => {
    delete targets[session.name];
  });
  print(ctx, `deleted target: ${session.name}\n`);
}

/** fly rename-target: the same target under a new name; an existing name is not overwritten. */
async function renameTarget(ctx: Context, values: Values): Promise<void> {
  const session = await openSession(ctx);
  const next = targetName(requiredOption(values, 'new-name', 'n'));
  await updateTargets(ctx.file, (targets) => {
    if (next !== session.name && targets[next]) {
      throw new SkyError('invalid_request', `a target called '${next}' already exists: delete it first`);
    }
    const target = targets[session.name];
    delete targets[session.name];
    if (target) targets[next] = target;
  });
  print(ctx, `Target '${session.name}' has been renamed to '${next}'\n`);
}

/**
 * fly edit-target: a new name, URL or team. A new URL forgets the token (it was issued by another node),
 * as does a new team only when the token does not cover it (the next command says to log in).
 */
async function editTarget(ctx: Context, values: Values): Promise<void> {
  const session = await openSession(ctx);
  const rename = stringOption(values, 'target-name');
  const url = stringOption(values, 'concourse-url');
  const team = stringOption(values, 'team-name');
  if (rename === undefined && url === undefined && team === undefined) {
    throw new SkyError(
      'invalid_request',
      'nothing to edit: give --target-name, --concourse-url or --team-name',
    );
  }
  const name = rename === undefined ? session.name : targetName(rename);
  const api = url === undefined ? undefined : parseApiUrl(url);
  const teamName = team === undefined ? undefined : validateTeamName(team);
  await updateTargets(ctx.file, (targets) => {
    if (name !== session.name && targets[name]) {
      throw new SkyError('invalid_request', `a target called '${name}' already exists: delete it first`);
    }
    const target = targets[session.name];
    if (!target) return;
    if (api !== undefined && api !== target.api) {
      target.api = api;
      delete target.token;
      delete target.refresh_token;
    }
    if (teamName !== undefined) target.team = teamName;
    delete targets[session.name];
    targets[name] = target;
  });
  print(ctx, `Updated target: ${name}\n`);
}

export const targetsCommand: CommandSpec = {
  name: 'targets',
  aliases: ['ts'],
  summary: 'List saved targets',
  options: {},
  run: listTargets,
};

export const statusCommand: CommandSpec = {
  name: 'status',
  aliases: [],
  summary: 'Login status',
  options: {},
  run: status,
};

export const deleteTargetCommand: CommandSpec = {
  name: 'delete-target',
  aliases: ['dtg'],
  summary: 'Delete target',
  options: { all: { type: 'boolean', short: 'a', description: 'Delete all targets' } },
  run: deleteTarget,
};

export const renameTargetCommand: CommandSpec = {
  name: 'rename-target',
  aliases: ['rtg'],
  summary: 'Rename a target',
  options: {
    'new-name': { type: 'string', short: 'n', value: 'NAME', description: 'New name of the target' },
  },
  run: renameTarget,
};

export const editTargetCommand: CommandSpec = {
  name: 'edit-target',
  aliases: ['etg'],
  summary: 'Edit a target',
  options: {
    'target-name': { type: 'string', value: 'NAME', description: 'Update target name' },
    'concourse-url': { type: 'string', short: 'c', value: 'URL', description: 'Update concourse URL' },
    'team-name': { type: 'string', short: 'n', value: 'TEAM', description: 'Update team name' },
  },
  run: editTarget,
};
