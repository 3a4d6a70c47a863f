import { SkyError } from '../../errors';
import { isRole, ROLES, validateTeamName } from '../../teams/auth';
import { parseExpiresIn, validateTokenName, type AutomationTokenView } from '../../tokens/automation';
import { callApi, expectJson, serverError, type Session } from '../client';
import {
  booleanOption,
  openSession,
  print,
  stringOption,
  type CommandSpec,
  type Context,
  type Values,
} from '../command';
import { renderTable } from '../io';

/** POST /api/v1/teams/:team/tokens's answer: the only place the secret ever appears. */
interface CreatedToken {
  team: string;
  name: string;
  role: string;
  token: string;
  created_at: string;
  expires_at: string;
}

/** fly's time layout (`2006-01-02@15:04:05-0700`), in UTC: one word, so `awk` and `cut` still work. */
export function flyTime(iso: string | null | undefined): string {
  if (!iso) return 'n/a';
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return 'n/a';
  return at
    .toISOString()
    .replace('T', '@')
    .replace(/\.\d{3}Z$/, '+0000');
}

/** go-flags' wording for a missing long-only flag. */
function required(values: Values, name: string): string {
  const value = stringOption(values, name);
  if (value === undefined || value === '') {
    throw new SkyError('invalid_request', `the required flag \`--${name}' was not specified`);
  }
  return value;
}

/** -n (checked before the target is read), else the target's team. */
async function teamAndSession(ctx: Context, values: Values): Promise<{ team: string; session: Session }> {
  const given = stringOption(values, 'team-name');
  const team = given === undefined ? undefined : validateTeamName(given);
  const session = await openSession(ctx);
  return { team: team ?? session.target.team, session };
}

const tokensPath = (team: string, name?: string): string =>
  `/api/v1/teams/${encodeURIComponent(team)}/tokens${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;

/** --name, in the server's rule, the message naming the flag. */
function tokenName(values: Values): string {
  const name = required(values, 'name');
  try {
    return validateTokenName(name);
  } catch {
    throw new SkyError(
      'invalid_request',
      `invalid --name '${name.slice(0, 70)}': 1-64 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

/** --expires: seconds (digits), days (`30d`) or a Go duration (`720h`); the node checks its maximum. */
function expiresIn(values: Values): number | string | undefined {
  const raw = stringOption(values, 'expires');
  if (raw === undefined) return undefined;
  const value = /^\d{1,10}$/.test(raw) ? Number(raw) : raw.trim();
  try {
    parseExpiresIn(value, Number.MAX_SAFE_INTEGER);
  } catch {
    throw new SkyError(
      'invalid_request',
      `invalid --expires '${raw.slice(0, 40)}': give a duration such as 30d, 720h or 90m (at least 1m), or seconds`,
    );
  }
  return value;
}

/**
 * sky create-token: a new automation token of the team. The secret alone goes to stdout (so
 * `sky … create-token … > bot.token` makes a file for `sky login --token-file`); what it is, and that
 * it will not be shown again, go to stderr.
 */
async function createToken(ctx: Context, values: Values): Promise<void> {
  const name = tokenName(values);
  const role = required(values, 'role');
  if (!isRole(role)) {
    throw new SkyError(
      'invalid_request',
      `invalid --role '${role.slice(0, 40)}': use one of ${ROLES.join(', ')}`,
    );
  }
  const expires = expiresIn(values);
  const { team, session } = await teamAndSession(ctx, values);
  const res = await callApi(session, tokensPath(team), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, role, ...(expires === undefined ? {} : { expires_in: expires }) }),
  });
  const created = await expectJson<CreatedToken>(res);
  const notice = (text: string): void => void ctx.io.stderr.write(text);
  if (booleanOption(values, 'json')) {
    print(ctx, JSON.stringify(created, null, 2) + '\n');
  } else {
    notice(
      `created automation token '${created.name}' of team '${created.team}' (role ${created.role}, expires ${flyTime(created.expires_at)}):\n\n`,
    );
    print(ctx, `${created.token}\n`);
    notice('\n');
  }
  notice(
    `this token will not be shown again: store it now (a CI secret, or a file for sky login -n ${created.team} --token-file FILE)\n`,
  );
}

/** sky tokens: the team's automation tokens, never a secret. */
async function listTokens(ctx: Context, values: Values): Promise<void> {
  const { team, session } = await teamAndSession(ctx, values);
  const tokens = await expectJson<AutomationTokenView[]>(await callApi(session, tokensPath(team)));
  if (booleanOption(values, 'json')) {
    print(ctx, JSON.stringify(tokens, null, 2) + '\n');
    return;
  }
  const rows = tokens.map((t) => [
    t.name,
    t.role,
    t.created_by || t.created_by_sub,
    flyTime(t.expires_at),
    t.last_used_at ? flyTime(t.last_used_at) : 'never',
  ]);
  print(ctx, renderTable(['name', 'role', 'created by', 'expires', 'last used'], rows, ctx.printHeaders));
}

/** sky revoke-token: the token stops working on every node at once. */
async function revokeToken(ctx: Context, values: Values): Promise<void> {
  const name = tokenName(values);
  const { team, session } = await teamAndSession(ctx, values);
  const res = await callApi(session, tokensPath(team, name), { method: 'DELETE' });
  if (!res.ok) throw await serverError(res);
  await res.body?.cancel();
  print(ctx, `revoked automation token '${name}' of team '${team}'\n`);
}

const teamName = {
  type: 'string',
  short: 'n',
  value: 'TEAM',
  description: "The token's team (default: the target's team)",
} as const;
const json = { type: 'boolean', short: 'j', description: 'Print command result as JSON' } as const;

export const createTokenCommand: CommandSpec = {
  name: 'create-token',
  aliases: [],
  summary: 'Create an automation token for a team (owners and admins); its secret is shown once',
  options: {
    'team-name': teamName,
    name: {
      type: 'string',
      value: 'NAME',
      description: "The token's name: 1-64 characters a-z, 0-9, '.', '_' or '-'",
    },
    role: { type: 'string', value: 'ROLE', description: `The token's role: ${ROLES.join(', ')}` },
    expires: {
      type: 'string',
      value: 'DURATION',
      description: "How long it works: 30d, 720h, 90m or seconds (default: 90d, at most the node's limit)",
    },
    json,
  },
  run: createToken,
};

export const tokensCommand: CommandSpec = {
  name: 'tokens',
  aliases: [],
  summary: "List a team's automation tokens (owners and admins)",
  options: { 'team-name': teamName, json },
  run: listTokens,
};

export const revokeTokenCommand: CommandSpec = {
  name: 'revoke-token',
  aliases: [],
  summary: "Revoke a team's automation token on every node",
  options: {
    'team-name': teamName,
    name: { type: 'string', value: 'NAME', description: 'The token to revoke' },
  },
  run: revokeToken,
};
