import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startWebNode } from '../../lib/server';
import { Browser } from '../harness/browser';
import { freePort } from '../harness/global-setup';
import { cliLoginAs } from '../harness/login';
import { fakeBitbucketEnv, spawnWebNode } from '../harness/process';
import { FakeBitbucket } from '../../lib/testing';

/** The web node as a new user meets it: no environment at all, then the two start-up failures. */

/** Fills the fake Bitbucket's consent form the way a person would: pick a user, press "Grant access". */
function consentForm(html: string, pageUrl: string, user: string): { action: string; body: URLSearchParams } {
  const form = /<form[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) throw new Error('no consent form on the page');
  const action = /action="([^"]*)"/i.exec(form[0])?.[1] ?? pageUrl;
  const body = new URLSearchParams();
  for (const input of form[1]?.matchAll(/<input[^>]*type="hidden"[^>]*>/gi) ?? []) {
    const name = /name="([^"]*)"/.exec(input[0])?.[1];
    const value = /value="([^"]*)"/.exec(input[0])?.[1] ?? '';
    if (name)
      body.set(
        name,
        value.replace(/&amp;/g, '&').replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c))),
      );
  }
  const select = /<select[^>]*name="([^"]*)"/i.exec(form[1] ?? '');
  expect(form[1]).toMatch(new RegExp(`<option[^>]*value="${user}"`));
  body.set(select?.[1] ?? 'user', user);
  body.set('decision', 'grant');
  return { action: new URL(action.replace(/&amp;/g, '&'), pageUrl).href, body };
}

test('with no credentials and no Redis, a browser can log in as the fixture user alice', async () => {
  // Only the port differs from `npm start` (8080 may be taken on a test machine).
  const port = await freePort();
  const node = await startWebNode({
    CONCOURSE_BIND_IP: '127.0.0.1',
    CONCOURSE_BIND_PORT: String(port),
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
    LOG_LEVEL: 'silent',
  });
  try {
    const browser = new Browser();
    const home = await browser.request(`${node.url}/`);
    expect(home.status).toBe(200);
    // A token split over many cookies fits in the node's header limit (Node's default would say 431).
    const big = Array.from({ length: 10 }, (_, i) => `skymarshal_auth${i}=${'x'.repeat(3900)}`).join('; ');
    expect((await fetch(`${node.url}/`, { headers: { cookie: big } })).status).toBe(200);
    expect(home.body).toContain('Log in with Bitbucket Cloud');
    const [start] = await browser.follow(`${node.url}/sky/login`, 1);
    const consent = await browser.request(start?.location ?? '');
    expect(consent.status).toBe(200);
    const { action, body } = consentForm(consent.body, consent.url, 'alice');
    const granted = await browser.request(action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect(granted.status).toBe(302);
    const hops = await browser.follow(granted.location ?? '', 3);
    expect(hops[0]?.status).toBe(302);
    expect(hops[0]?.location).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${port}/\\?csrf_token=`));
    const landing = await browser.request(`${node.url}/`);
    expect(landing.body).toContain('Hello, Alice Admin');
    expect(landing.body).toContain('main');
    expect(landing.body).toContain('owner');
  } finally {
    await node.close();
  }
});

test('start-up without a main team fails with a message that names the setting', async () => {
  await expect(
    startWebNode({
      CONCOURSE_BIND_PORT: '0',
      CONCOURSE_BITBUCKET_CLOUD_CLIENT_ID: 'id',
      CONCOURSE_BITBUCKET_CLOUD_CLIENT_SECRET: 'secret',
      LOG_LEVEL: 'silent',
    }),
  ).rejects.toThrow(/CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER/);
});

test('a dex YAML whose redirectURI does not match the callback fails with both URLs', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-dex-'));
  const file = path.join(dir, 'dex.yaml');
  writeFileSync(
    file,
    [
      'connectors:',
      '- type: bitbucket-cloud',
      '  id: bitbucket-cloud',
      '  name: Bitbucket Cloud',
      '  config:',
      '    clientID: $BB_ID',
      '    clientSecret: $BB_SECRET',
      '    redirectURI: https://dex.example.com/callback',
      '',
    ].join('\n'),
  );
  const attempt = startWebNode({
    SKY_CONFIG: file,
    BB_ID: 'id',
    BB_SECRET: 'secret',
    CONCOURSE_EXTERNAL_URL: 'https://ci.example.com',
    CONCOURSE_MAIN_TEAM_BITBUCKET_CLOUD_USER: 'alice',
    LOG_LEVEL: 'silent',
  });
  await expect(attempt).rejects.toThrow('https://dex.example.com/callback');
  await expect(attempt).rejects.toThrow('https://ci.example.com/sky/issuer/callback');
});

test('the embedded default (no Redis) refreshes, rotates, detects reuse and revokes like Redis', async () => {
  const port = await freePort();
  const node = await startWebNode({
    CONCOURSE_BIND_IP: '127.0.0.1',
    CONCOURSE_BIND_PORT: String(port),
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${port}`,
    LOG_LEVEL: 'silent',
  });
  const fake = node.fake;
  if (!fake) throw new Error('the web node started no fake Bitbucket');
  const refresh = async (token: string) => {
    const res = await fetch(`${node.url}/sky/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=refresh_token&refresh_token=${token}`,
    });
    return { status: res.status, body: (await res.json()) as { refresh_token?: string; error?: string } };
  };
  try {
    const cli = await cliLoginAs(node.url, fake, 'alice');
    fake.expireAccessTokens();
    const first = await refresh(cli.refreshToken);
    expect(first.status).toBe(200);
    expect((await refresh(cli.refreshToken)).body.error).toBe('invalid_grant'); // reuse
    expect((await refresh(first.body.refresh_token ?? '')).body.error).toBe('invalid_grant'); // family ended

    const other = await cliLoginAs(node.url, fake, 'alice');
    fake.revokeGrant('alice');
    expect((await refresh(other.refreshToken)).body.error).toBe('invalid_grant');
    const user = await fetch(`${node.url}/api/v1/user`, { headers: other.bearer });
    expect(user.status).toBe(401);
  } finally {
    await node.close();
  }
});

/** The lines a web node process logged at warn level, by message. */
const warnings = (output: string): string[] =>
  output
    .split('\n')
    .filter((line) => line.includes('"level":40'))
    .map((line) => String((JSON.parse(line) as { msg: string }).msg));

test('npm start with only local users: the fake still starts, and its warning does not send anyone to alice', async () => {
  const node = await spawnWebNode({
    CONCOURSE_ADD_LOCAL_USER: 'admin:break-glass-42',
    CONCOURSE_MAIN_TEAM_LOCAL_USER: 'admin',
  });
  try {
    expect(warnings(node.output())).toEqual([
      'no Bitbucket Cloud credentials: using the bundled fake Bitbucket; team main is owned as the environment says (a demonstration, not for production)',
      'CONCOURSE_ADD_LOCAL_USER gives the password of admin in plain text: give a bcrypt hash instead (htpasswd -nbBC 10 NAME PASSWORD prints name:hash)',
    ]);
    const token = await fetch(`${node.url}/sky/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=password&username=admin&password=break-glass-42',
    });
    expect(token.status).toBe(200);
  } finally {
    await node.stop();
  }
});

test('npm start with nothing set: one warning line (the fake Bitbucket), and the favicon is not a 404', async () => {
  const node = await spawnWebNode({});
  try {
    const lines = warnings(node.output());
    expect(lines).toEqual([
      "no Bitbucket Cloud credentials: using the bundled fake Bitbucket; log in as the fixture user 'alice' (a demonstration, not for production)",
    ]);
    const icon = await fetch(`${node.url}/favicon.ico`);
    expect(icon.status).toBe(204);
    expect(icon.headers.get('cache-control')).toBe('public, max-age=86400');
    // The default external URL follows CONCOURSE_BIND_PORT: the login button stays on this node.
    const info = (await (await fetch(`${node.url}/api/v1/info`)).json()) as { external_url: string };
    expect(info.external_url).toBe(`http://localhost:${new URL(node.url).port}`);
    const login = await fetch(`${node.url}/sky/login`, { redirect: 'manual' });
    const authorize = new URL(login.headers.get('location') ?? '');
    expect(authorize.searchParams.get('redirect_uri')).toBe(
      `http://localhost:${new URL(node.url).port}/sky/issuer/callback`,
    );
    // A favicon request is not logged at info (it was a 404 line for every page).
    expect(node.output()).not.toContain('favicon');
  } finally {
    await node.stop();
  }
});

test('real credentials with an http external URL: a warning about cookies without Secure', async () => {
  const fake = await FakeBitbucket.start();
  const node = await spawnWebNode({
    ...fakeBitbucketEnv(fake),
    CONCOURSE_EXTERNAL_URL: 'http://ci.internal:8080',
  });
  try {
    expect(warnings(node.output())).toEqual([
      'the external URL http://ci.internal:8080 is http: login cookies are sent without Secure and tokens travel in clear; use an https CONCOURSE_EXTERNAL_URL (behind TLS) in production',
      'no REDIS_URL: sessions, teams and revocations are kept in process memory (one node only, lost at restart)',
    ]);
  } finally {
    await node.stop();
    await fake.stop();
  }
});

test('a port already in use: the start-up error names CONCOURSE_BIND_PORT', async () => {
  const first = await spawnWebNode({});
  try {
    const port = new URL(first.url).port;
    await expect(
      startWebNode({ CONCOURSE_BIND_IP: '127.0.0.1', CONCOURSE_BIND_PORT: port, LOG_LEVEL: 'silent' }),
    ).rejects.toThrow(
      `CONCOURSE_BIND_PORT: 127.0.0.1:${port} is already in use by another process: stop it, or choose another port with CONCOURSE_BIND_PORT (and CONCOURSE_EXTERNAL_URL)`,
    );
  } finally {
    await first.stop();
  }
});
