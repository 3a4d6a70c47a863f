/**
 * The connectors sky knows, in the order the login page lists them. Adding one is a folder under lib/
 * implementing ConnectorModule (lib/connector.ts) and one line here.
 */
import { bitbucketCloud } from './bitbucket/connector';
import type { Connector, ConnectorDeps, ConnectorModule } from './connector';
import { localUsers } from './local/connector';

export const CONNECTORS: readonly ConnectorModule[] = [bitbucketCloud, localUsers];

/** The connector an entry without a prefix belongs to (fly's `--bitbucket-cloud-user bob` is `bitbucket-cloud:bob`). */
export const DEFAULT_CONNECTOR: ConnectorModule = bitbucketCloud;

/** The module whose id is `id`, if sky knows one. */
export function connectorModule(id: string): ConnectorModule | undefined {
  return CONNECTORS.find((c) => c.id === id);
}

/** The module a prefixed entry or subject (`<id>:…`) belongs to, and the rest after the prefix. */
export function splitPrefixed(value: string): { module: ConnectorModule; bare: string } | null {
  for (const module of CONNECTORS) {
    if (value.startsWith(`${module.id}:`)) return { module, bare: value.slice(module.id.length + 1) };
  }
  return null;
}

/** The connectors sky's config enables, each with its runtime part. */
export function enabledConnectors(deps: ConnectorDeps): Connector[] {
  return CONNECTORS.flatMap((module) => {
    const runtime = module.create(deps);
    return runtime ? [{ ...module, ...runtime }] : [];
  });
}
