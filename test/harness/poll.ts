import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `check` every 25 ms until it holds; the ms it took, or throws with `what` after `limitMs`. */
export async function msUntil(what: string, check: () => Promise<boolean>, limitMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await sleep(25);
  }
  return Date.now() - started;
}
