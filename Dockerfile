# The node-bootstrap worker (docker-compose.yml builds it as nodeboot-worker).
#
# It runs the TypeScript sources with tsx (a runtime dependency), exactly as
# `npm run worker` does. No wireguard-tools or SPIRE binaries in here: node-side
# work (wg, spire-agent, workloads) runs on the node, reached through the
# worker's host transports (activities/host/transport.ts); see docs/observability.md.
# The ssh transport needs the ssh client, so that one is installed.
FROM node:20.20.2-bookworm-slim

RUN apt-get update \
  && apt-get install -y --no-install-recommends openssh-client \
  && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first (cached until the lockfile changes). The Temporal core
# bridge ships prebuilt glibc binaries, so no toolchain is needed.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Only what the worker imports (workflows are bundled from source at start).
COPY tsconfig.json ./
COPY common ./common
COPY inventory ./inventory
COPY activities ./activities
COPY workflows ./workflows
COPY workers ./workers
# The fleet's nodeLifecycle activity reads a node's runs with the library client's reader (client/lifecycle.ts).
COPY client ./client

USER node
# 9464: our /metrics (NODEBOOT_METRICS_PORT); 9465: Temporal Core's (NODEBOOT_TEMPORAL_METRICS_PORT).
EXPOSE 9464 9465
CMD ["node", "--import", "tsx", "workers/worker.ts"]
