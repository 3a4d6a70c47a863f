import type { TestNode } from './node';

/** One sample's value in a node's metrics text (README "Metrics"), 0 when absent. */
export async function metricSample(
  node: TestNode,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await node.router.metrics.metrics();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? '').split(',');
    if (wanted.every((w) => have.includes(w))) return Number(match[3]);
  }
  return 0;
}
