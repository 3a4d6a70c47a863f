import type { IncomingMessage } from 'node:http';

/** What the fake saw: every request, recorded before any fault applies. */

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  at: number;
  /** The fixture user whose access token the request carried, if any (API calls). */
  user?: string;
}

export function recordOf(req: IncomingMessage, url: URL, user: string | undefined): RecordedRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return {
    method: req.method ?? 'GET',
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    headers,
    at: Date.now(),
    ...(user === undefined ? {} : { user }),
  };
}

/** A path starting with the string, or matching the RegExp. */
export function pathMatches(request: RecordedRequest, match: string | RegExp): boolean {
  return typeof match === 'string' ? request.path.startsWith(match) : match.test(request.path);
}
