import net from 'node:net';

/**
 * Raw HTTP/1.1 for the fuzzing: Node's clients refuse to send most of what a fuzzer wants to send
 * (odd methods, header bytes, repeated headers), so each request goes on a socket of its own.
 */

export interface Answer {
  status: number;
  headers: Map<string, string[]>;
  body: string;
}

export const headerOf = (a: Answer, name: string): string | undefined => a.headers.get(name)?.join(', ');

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

export function parseAnswer(raw: Buffer, method: string): Answer {
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0)
      throw new Error(`no complete answer: ${JSON.stringify(rest.toString('latin1').slice(0, 300))}`);
    const head = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1]);
    if (!status) throw new Error(`not an HTTP answer: ${JSON.stringify(head[0])}`);
    rest = rest.subarray(end + 4);
    // An interim answer (100 Continue for `Expect: 100-continue`) precedes the real one.
    if (status < 200) continue;
    const headers = new Map<string, string[]>();
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
    }
    let body = method === 'HEAD' ? Buffer.alloc(0) : rest;
    if (/chunked/i.test(headers.get('transfer-encoding')?.join() ?? '')) body = dechunk(body);
    else if (headers.has('content-length'))
      body = body.subarray(0, Number(headers.get('content-length')?.[0]));
    return { status, headers, body: body.toString('utf8') };
  }
}

/** Requests sent through `exchange`, for the figures. */
export const sent = { requests: 0 };

/** One request on a fresh connection (`Connection: close`): the answer, or a failure if none comes. */
export function exchange(port: number, method: string, request: Buffer, timeoutMs = 15_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms (a hung request)`));
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A reset once the answer is in is fine; no answer at all fails in parseAnswer.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseAnswer(Buffer.concat(chunks), method));
      } catch (err) {
        reject(err as Error);
      }
    });
    sent.requests++;
    socket.write(request);
  });
}

/** Header values never carry CR, LF or NUL: those would change the framing, not test sky. */
export const clean = (value: string): string => value.replace(/[\r\n\0]/g, '');

export function wire(
  port: number,
  method: string,
  target: string,
  headers: [string, string][],
  body: Buffer | null,
): Buffer {
  const lines = [`${method} ${target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close'];
  for (const [name, value] of headers) lines.push(`${name}: ${clean(value)}`);
  if (body) lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'), body ?? Buffer.alloc(0)]);
}

/** Lone surrogates become U+FFFD, so every string can be UTF-8 encoded (and URI-encoded). */
export const wellFormed = (text: string): string =>
  text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');

/** Percent-encodes what cannot stand in a request line. */
export function encode(text: string, raw = false): string {
  const safe = wellFormed(text);
  return raw ? safe.replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c)) : encodeURIComponent(safe);
}
