// The agent healthcheck on local/netns nodes asks grpc.health.v1 on the agent's
// socket directly (what `spire-agent healthcheck` sends) instead of starting the
// Go CLI: against a real gRPC health server on a unix socket.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandsStarted } from '../../activities/host/exec.js';
import { localTransport } from '../../activities/host/transport.js';
import { agentHealthcheck } from '../../activities/spire/agent-cli.js';

const HEALTH_PROTO = fileURLToPath(
  new URL('../../activities/spire/proto/grpc/health/v1/health.proto', import.meta.url),
);

describe('agentHealthcheck over the agent socket (local/netns nodes)', () => {
  let dir: string;
  let server: grpc.Server;
  let status = 'SERVING';
  const asked: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'nb-agent-health-'));
    const def = protoLoader.loadSync(HEALTH_PROTO, { keepCase: true, enums: String });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- loadPackageDefinition is untyped by nature
    const pkg = grpc.loadPackageDefinition(def) as any;
    server = new grpc.Server();
    server.addService(pkg.grpc.health.v1.Health.service, {
      Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        asked.push(call.request.service);
        cb(null, { status });
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${path.join(dir, 'agent.sock')}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  });
  afterAll(() => {
    server?.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  const check = (socketPath: string) => agentHealthcheck({ transport: localTransport(), socketPath, timeoutMs: 2_000 });

  it('is healthy when the agent answers SERVING, asked with no service name, starting no program', async () => {
    const before = Object.values(commandsStarted).reduce((a, b) => a + b, 0);
    status = 'SERVING';
    expect(await check(path.join(dir, 'agent.sock'))).toBe(true);
    expect(asked.at(-1)).toBe('');
    expect(Object.values(commandsStarted).reduce((a, b) => a + b, 0)).toBe(before);
  });

  it('is not healthy when the agent answers NOT_SERVING', async () => {
    status = 'NOT_SERVING';
    expect(await check(path.join(dir, 'agent.sock'))).toBe(false);
  });

  it('is not healthy when nothing listens on the socket', async () => {
    expect(await check(path.join(dir, 'absent.sock'))).toBe(false);
  });

  it('throws the cancellation of an aborted activity', async () => {
    const ac = new AbortController();
    ac.abort(new Error('cancelled'));
    await expect(
      agentHealthcheck({ transport: localTransport(), socketPath: path.join(dir, 'agent.sock'), signal: ac.signal }),
    ).rejects.toThrow('cancelled');
  });
});
