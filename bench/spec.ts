/** What one bench web node runs: handed from run.ts to server.ts as JSON (SKY_BENCH_NODE). */
export interface NodeSpec {
  /** bare: the route alone; sky: sky() + requiresTeamRole; passport: express-session + passport + a role lookup. */
  variant: 'bare' | 'sky' | 'passport';
  redisUrl: string;
  /** Redis key prefix (sky) or the prefix of the passport app's keys. */
  prefix: string;
  fake: { url: string; clientId: string; clientSecret: string };
  /** Connector switches of SPEC §5.3 (sky only). */
  includeTeamGroups?: boolean;
  getWorkspacePermissions?: boolean;
  /** SKY_GROUPS_MAX_AGE (sky only; default 15m). */
  groupsMaxAge?: string;
}

/** The guarded host route: Concourse's own shape, a team's pipelines. GET and POST. */
export const ROUTE = '/api/v1/teams/:team/pipelines';
export const routeFor = (team: string): string => `/api/v1/teams/${team}/pipelines`;

/** Memory of the node (process.memoryUsage() in bytes), after a full GC when ?gc=1. */
export const MEMORY_ROUTE = '/_bench/memory';
/** The passport app's login (what its OAuth callback would end in): req.login of the seeded user. */
export const PASSPORT_LOGIN_ROUTE = '/_bench/login';

/** Messages on the IPC channel between run.ts and a node. */
export type NodeMessage = { type: 'ready'; port: number } | { type: 'failed'; message: string };
