import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeProtectedHeader } from 'jose';
import { FakeBitbucket } from '../../lib/testing';
import { freePort } from '../harness/global-setup';
import { cliLoginAs, loginAs, tokenRequest } from '../harness/login';
import { testPrefix, testRedisEnv } from '../harness/node';
import { fakeBitbucketEnv, spawnWebNode, type NodeProcess } from '../harness/process';

/**
 * A rolling rotation of the signing key across two `npm start` nodes (README "Rotating the signing key"),
 * one node restarted at a time while people keep calling the API on both:
 *   0. both sign with the old key;
 *   1. each node in turn gets the new key as a previous key (it verifies, nobody signs with it yet);
 *   2. each node in turn signs with the new key, the old one moved to SKY_PREVIOUS_SIGNING_KEYS.
 * Nobody who was logged in is refused at any moment, and a refresh token from before redeems after.
 */
const keyFile = (dir: string, name: string): string => {
  const file = path.join(dir, name);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return file;
};

let fake: FakeBitbucket;
beforeAll(async () => {
  fake = await FakeBitbucket.start();
});
afterAll(() => fake.stop());

test('old key → previous, new key signing, one node at a time: no logged-in user is refused', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sky-rotation-'));
  const oldKey = keyFile(dir, 'old.pem');
  const newKey = keyFile(dir, 'new.pem');
  const [portA, portB] = [await freePort(), await freePort()];
  const base = {
    ...fakeBitbucketEnv(fake),
    ...testRedisEnv(),
    SKY_KEY_PREFIX: testPrefix(),
    CONCOURSE_EXTERNAL_URL: `http://127.0.0.1:${portA}`,
  };
  const env = (signing: string, previous?: string): Record<string, string> => ({
    ...base,
    CONCOURSE_SESSION_SIGNING_KEY: signing,
    ...(previous ? { SKY_PREVIOUS_SIGNING_KEYS: previous } : {}),
  });
  const nodes: Record<'a' | 'b', NodeProcess | null> = {
    a: await spawnWebNode(env(oldKey), portA),
    b: await spawnWebNode(env(oldKey), portB),
  };
  const ports = { a: portA, b: portB };
  try {
    const alice = await loginAs(nodes.a?.url ?? '', fake, 'alice');
    const cli = await cliLoginAs(nodes.b?.url ?? '', fake, 'alice');
    const oldKid = decodeProtectedHeader(cli.token).kid;
    // Every token anyone holds; each is tried on every node that is up, again and again.
    const tokens = [alice.token, cli.token];
    const refusals: string[] = [];
    let calls = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        for (const [name, node] of Object.entries(nodes)) {
          if (!node) continue;
          for (const token of [...tokens]) {
            const res = await fetch(`${node.url}/api/v1/user`, {
              headers: { authorization: `Bearer ${token}` },
            }).catch(() => null); // a node that is restarting: a load balancer would send the call elsewhere
            if (!res) continue;
            calls++;
            if (res.status !== 200) refusals.push(`${name}: ${res.status} ${await res.text()}`);
          }
        }
        await sleep(20);
      }
    })();
    const restart = async (name: 'a' | 'b', next: Record<string, string>): Promise<void> => {
      const node = nodes[name];
      nodes[name] = null;
      await node?.stop();
      nodes[name] = await spawnWebNode(next, ports[name]);
      await sleep(200);
    };

    await restart('a', env(oldKey, newKey));
    await restart('b', env(oldKey, newKey));
    await restart('a', env(newKey, oldKey));
    // A refresh on the rotated node: the old refresh token opens, the new access token is signed with the new key.
    const refreshed = await tokenRequest(nodes.a?.url ?? '', {
      grant_type: 'refresh_token',
      refresh_token: cli.refreshToken,
    });
    expect(refreshed.status).toBe(200);
    const fresh = String(refreshed.body['access_token']);
    expect(decodeProtectedHeader(fresh).kid).not.toBe(oldKid);
    // …and verifies on b, which still signs with the old key but knows the new one (step 1).
    tokens.push(fresh);
    await sleep(300);
    await restart('b', env(newKey, oldKey));
    // b redeems the refresh token a rotated, and a's browser login still works on b.
    const again = await tokenRequest(nodes.b?.url ?? '', {
      grant_type: 'refresh_token',
      refresh_token: String(refreshed.body['refresh_token']),
    });
    expect(again.status).toBe(200);
    tokens.push(String(again.body['access_token']));
    await sleep(300);
    polling = false;
    await poller;

    expect(refusals).toEqual([]);
    expect(calls).toBeGreaterThan(20);
    const jwks = (await (await fetch(`${nodes.b?.url}/sky/issuer/keys`)).json()) as {
      keys: { kid: string }[];
    };
    expect(jwks.keys.map((k) => k.kid)).toContain(oldKid);
    expect(jwks.keys).toHaveLength(2);
    // The browser's cookie, signed with the old key before the rotation, still works on a rotated node.
    const page = await alice.browser.request(`${nodes.a?.url}/api/v1/user`);
    expect(page.status).toBe(200);
  } finally {
    await Promise.all([nodes.a?.stop(), nodes.b?.stop()]);
  }
}, 90_000);
