// A host app (CommonJS): sky's routes under /ci, the app's own routes behind sky's guards.
import express from 'express';
import {
  claimsOf,
  errorHandler,
  requiresAdmin,
  requiresTeamRole,
  sky,
  type SkyOptions,
} from 'skymarshal-express';

export async function createApp(
  options: SkyOptions,
): Promise<{ app: express.Express; close: () => Promise<void> }> {
  const auth = sky(options);
  const app = express();
  app.use('/ci', auth); // the external URL ends in /ci
  app.get('/ci/api/v1/teams/:team/pipelines', requiresTeamRole('viewer'), (req, res) => {
    res.json({ team: req.params['team'], viewer: claimsOf(req)?.name ?? null, pipelines: [] });
  });
  app.post('/ci/api/v1/teams/:team/pipelines', requiresTeamRole('member'), (_req, res) => {
    res.sendStatus(201);
  });
  app.get('/ci/admin', requiresAdmin(), (_req, res) => {
    res.json({ admin: true });
  });
  app.use(errorHandler()); // sky's 401/403 answers on the app's routes too
  await auth.ready; // main written, revocations loaded
  return { app, close: () => auth.close() };
}
