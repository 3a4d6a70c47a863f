import { SkyError } from '../../errors';
import { callApi, expectJson, isAutomationToken, peerOf, send, serverError, type Session } from '../client';
import { booleanOption, openSession, print, type CommandSpec, type Context, type Values } from '../command';
import { CliExit, renderTable } from '../io';
import { loadTargets, updateTargets } from '../skyrc';
import { expiry } from './targets';

/** GET /api/v1/user. */
interface UserInfo {
  user_name?: string;
  display_user_id?: string;
  user_id?: string;
  teams?: Record<string, string[]>;
}

/** fly userinfo: who the token says you are, and your roles. */
async function userinfo(ctx: Context, values: Values): Promise<void> {
  const session = await openSession(ctx);
  if (isAutomationToken(session.target.token?.value)) {
    const { name, target } = session;
    throw new CliExit(
      `this target uses an automation token of team '${target.team}': there is no user behind it to show (userinfo needs a person's login). check the token with:\n\n    sky -t ${name} status\n`,
    );
  }
  const user = await expectJson<UserInfo>(await callApi(session, '/api/v1/user'));
  if (booleanOption(values, 'json')) {
    print(ctx, JSON.stringify(user, null, 2) + '\n');
    return;
  }
  const roles = Object.entries(user.teams ?? {})
    .flatMap(([team, held]) => held.map((role) => `${team}/${role}`))
    .sort();
  const name = user.display_user_id || user.user_name || user.user_id || '';
  print(ctx, renderTable(['username', 'team/role'], [[name, roles.join(',')]], ctx.printHeaders));
}

/**
 * Revokes the token at the web node, then forgets it. A token the node already refuses (401) is
 * forgotten too; when the node cannot be reached the token is kept, so the logout can be retried.
 * The refresh token travels along so a node that tracks it can revoke it with the session.
 */
async function revoke(session: Session): Promise<string | null> {
  const token = session.target.token?.value;
  let unreached: string | null = null;
  if (isAutomationToken(token)) {
    // Not a login the node can end: only an owner of the team revokes it.
    unreached = `the automation token was removed from this machine only: it stays valid until it expires or an owner of team '${session.target.team}' revokes it (sky revoke-token -n ${session.target.team} --name NAME)`;
  } else if (token) {
    const body = new URLSearchParams(
      session.target.refresh_token ? { refresh_token: session.target.refresh_token } : {},
    );
    const res = await send(peerOf(session), `${session.target.api}/sky/logout`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: body.toString(),
    }).catch((err: unknown) => {
      // Unreachable: the local token goes anyway (it is what the person asked); the node keeps it valid.
      if (err instanceof CliExit || (err instanceof SkyError && err.code === 'upstream_timeout')) {
        unreached = `could not reach ${session.target.api} to revoke the token; it was removed from this machine but stays valid there until it expires (${expiry(session.target.token)})`;
        return null;
      }
      throw err;
    });
    if (res && !res.ok && res.status !== 401) throw await serverError(res);
    await res?.body?.cancel();
  }
  await updateTargets(session.file, (targets) => {
    const target = targets[session.name];
    if (!target) return;
    delete target.token;
    delete target.refresh_token;
  });
  return unreached;
}

/** fly logout: -t one target, or -a every target. */
async function logout(ctx: Context, values: Values): Promise<void> {
  const all = booleanOption(values, 'all');
  if (ctx.target && !all) {
    const unreached = await revoke(await openSession(ctx));
    if (unreached) ctx.io.stderr.write(`warning: ${unreached}\n`);
    print(ctx, `logged out of target: ${ctx.target}\n`);
    return;
  }
  if (!ctx.target && all) {
    // Every target, whatever happens to one: each failure is reported, and the exit says there was one.
    const targets = await loadTargets(ctx.file);
    let failed = 0;
    for (const [name, target] of Object.entries(targets)) {
      try {
        const unreached = await revoke({ name, file: ctx.file, target });
        if (unreached) ctx.io.stderr.write(`warning: ${name}: ${unreached}\n`);
      } catch (err) {
        failed++;
        ctx.io.stderr.write(`error: ${name}: ${err instanceof Error ? err.message.trim() : String(err)}\n`);
      }
    }
    if (failed > 0) throw new CliExit(`could not log out of ${failed} target${failed === 1 ? '' : 's'}\n`);
    print(ctx, 'logged out of all targets\n');
    return;
  }
  throw new SkyError('invalid_request', 'must specify either --target or --all');
}

export const userinfoCommand: CommandSpec = {
  name: 'userinfo',
  aliases: [],
  summary: 'User information',
  options: { json: { type: 'boolean', description: 'Print command result as JSON' } },
  run: userinfo,
};

export const logoutCommand: CommandSpec = {
  name: 'logout',
  aliases: [],
  summary: 'Release authentication and delete the token from .skyrc',
  options: { all: { type: 'boolean', short: 'a', description: 'Logout of all targets' } },
  run: logout,
};
