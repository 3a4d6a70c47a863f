# sky's web node (README "Production"): a build stage with the dev dependencies, then a runtime with the
# production dependencies only, as the unprivileged `node` user. Configure it with CONCOURSE_* variables.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
# The bundled fake Bitbucket's fixture users (a node started without credentials, for a demonstration).
COPY fixtures ./fixtures
USER node
EXPOSE 8080
# Healthy while /readyz answers 200 (ready or degraded): Redis reachable, caches loaded, not shutting down.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CONCOURSE_BIND_PORT || 8080) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM reaches node itself (no shell between): in-flight requests finish (SKY_SHUTDOWN_GRACE).
CMD ["node", "dist/server.js"]
