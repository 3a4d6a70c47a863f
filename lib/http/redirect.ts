/**
 * The one redirect sanitiser (SPEC §4.1): parse against the external URL, require the same origin and
 * the mount path, and hand back an ABSOLUTE URL, so the Location never depends on how a browser reads
 * a relative path such as `//evil` or `/\evil`. Anything else falls back to the mount root.
 */
export function safeRedirect(raw: unknown, externalUrl: string): URL {
  const root = new URL(externalUrl + '/');
  if (typeof raw !== 'string' || raw === '' || raw.length > 4096) return root;
  let target: URL;
  try {
    target = new URL(raw, root);
  } catch {
    return root;
  }
  if (target.origin !== root.origin || target.username !== '' || target.password !== '') return root;
  const mount = root.pathname; // ends with '/'
  if (target.pathname + '/' !== mount && !target.pathname.startsWith(mount)) return root;
  target.hash = '';
  return target;
}
