import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, withRequestId } from '../../lib/log';

/** A logger whose lines land in `lines`, parsed. */
function capture(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger('info', sink), lines };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('every line of a request, however deep and however late, has its id while its response is open', async () => {
  const { log, lines } = capture();
  const first = new EventEmitter();
  const second = new EventEmitter();
  const done = Promise.all([
    withRequestId('r1', first, async () => {
      await sleep(5);
      await Promise.resolve().then(() => log.info('deep in r1'));
    }),
    withRequestId('r2', second, async () => {
      await sleep(1);
      log.info('deep in r2');
    }),
  ]);
  log.info('outside any request');
  try {
    await done;
    await flush();
  } finally {
    first.emit('close');
    second.emit('close');
  }
  const seen = lines
    .map((l) => [l['msg'], l['reqId']])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  expect(seen).toEqual([
    ['deep in r1', 'r1'],
    ['deep in r2', 'r2'],
    ['outside any request', undefined],
  ]);
});

test('tracking stops when the last open response closes (the host app pays nothing between them)', async () => {
  const { log, lines } = capture();
  const res = new EventEmitter();
  let late: Promise<void> = Promise.resolve();
  withRequestId('r3', res, () => {
    late = sleep(20).then(() => log.info('after the response closed'));
    log.info('while open');
  });
  res.emit('close');
  await late;
  await flush();
  expect(lines.map((l) => [l['msg'], l['reqId']])).toEqual([
    ['while open', 'r3'],
    ['after the response closed', undefined],
  ]);
  // And a new request is tracked again.
  const again = new EventEmitter();
  await withRequestId('r4', again, async () => {
    await sleep(1);
    log.info('next request');
  });
  again.emit('close');
  await flush();
  expect(lines.at(-1)?.['reqId']).toBe('r4');
});
