// Worker metrics against the real dev server.
// 1. In process: fake activities behind the metrics interceptor, one provisionNode
//    that succeeds after a transient retry and one that fails and compensates;
//    /metrics then shows counters and histograms by step, error type and result.
// 2. The real entry point (workers/worker.ts as a process): with both metrics
//    ports set it serves our /metrics and Temporal Core's exporter, and logs JSON lines.
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionNode } from '../../workflows/index.js';
import { activityLoggingInterceptor } from '../../workers/logging.js';
import { metricsInterceptor, startMetricsServer, StepMetrics } from '../../workers/metrics.js';
import { createFakeActivities, failWith } from '../fixtures/fake-activities.js';
import { sampleInput } from '../fixtures/inputs.js';
import { createTestDatabase } from '../helpers/database.js';
import {
  connectTestEnv,
  eventually,
  uniqueId,
  uniqueTaskQueue,
  workflowBundle,
  type TemporalTestEnv,
} from '../helpers/temporal.js';
import { startWorkerProcess, stopAllWorkerProcesses } from '../helpers/worker-process.js';

const workflowsPath = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));

let env: TemporalTestEnv;
beforeAll(async () => {
  env = await connectTestEnv();
});
afterAll(async () => {
  await stopAllWorkerProcesses();
  await env?.close();
});

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of the sample `name{labels}` (labels in sorted order, as rendered), or undefined. */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('worker metrics', () => {
  it('counts steps, failures by error type and compensations, with duration histograms, at /metrics', async () => {
    const metrics = new StepMetrics();
    const server = await startMetricsServer(metrics, { port: 0, host: '127.0.0.1' });
    try {
      // Run 1 succeeds after one transient failure of step 4; run 2 fails step 4 for good and compensates.
      const ok = createFakeActivities({ startSpireAgent: failWith('AgentUnhealthy', 1) });
      const bad = createFakeActivities({ startSpireAgent: failWith('ToolMissing') });
      for (const [fake, expectOk] of [
        [ok, true],
        [bad, false],
      ] as const) {
        const taskQueue = uniqueTaskQueue('metrics');
        const worker = await Worker.create({
          connection: env.nativeConnection,
          namespace: env.namespace,
          taskQueue,
          workflowBundle: await workflowBundle(workflowsPath),
          activities: fake.activities,
          interceptors: { activity: [activityLoggingInterceptor(), metricsInterceptor(metrics)] },
        });
        const nodeId = uniqueId();
        const run = worker.runUntil(() =>
          env.client.workflow.execute(provisionNode, {
            taskQueue,
            workflowId: `provision/${nodeId}`,
            args: [sampleInput(nodeId)],
          }),
        );
        if (expectOk) await run;
        else await expect(run).rejects.toBeInstanceOf(WorkflowFailedError);
      }
      expect(bad.undos().map((c) => c.name)).toEqual([
        'undoStartSpireAgent',
        'undoIssueOverlayKey',
        'undoInstallOverlay',
      ]);

      const body = await scrape(server.port);
      expect(body).toContain('# TYPE nodeboot_step_started_total counter');
      expect(body).toContain('# TYPE nodeboot_step_duration_seconds histogram');
      expect(sample(body, 'nodeboot_step_started_total{step="installOverlay"}')).toBe(2);
      expect(sample(body, 'nodeboot_step_succeeded_total{step="installOverlay"}')).toBe(2);
      expect(sample(body, 'nodeboot_step_started_total{step="startSpireAgent"}')).toBe(3);
      expect(sample(body, 'nodeboot_step_succeeded_total{step="startSpireAgent"}')).toBe(1);
      expect(sample(body, 'nodeboot_step_failed_total{error_type="AgentUnhealthy",step="startSpireAgent"}')).toBe(1);
      expect(sample(body, 'nodeboot_step_failed_total{error_type="ToolMissing",step="startSpireAgent"}')).toBe(1);
      expect(sample(body, 'nodeboot_step_succeeded_total{step="launchWorkloads"}')).toBe(1);
      expect(sample(body, 'nodeboot_step_started_total{step="registerEntries"}')).toBe(1);
      for (const step of ['startSpireAgent', 'issueOverlayKey', 'installOverlay']) {
        expect(sample(body, `nodeboot_compensations_total{result="succeeded",step="${step}"}`), step).toBe(1);
      }
      expect(body).not.toMatch(/nodeboot_compensations_total\{[^}]*step="gatePeerHealth"/); // the gate has no undo
      expect(body).not.toContain('recordEvent');

      // Histograms: cumulative buckets ending in +Inf == _count, one series per step and outcome.
      expect(sample(body, 'nodeboot_step_duration_seconds_count{outcome="succeeded",step="installOverlay"}')).toBe(2);
      expect(
        sample(body, 'nodeboot_step_duration_seconds_bucket{outcome="succeeded",step="installOverlay",le="+Inf"}'),
      ).toBe(2);
      expect(sample(body, 'nodeboot_step_duration_seconds_count{outcome="failed",step="startSpireAgent"}')).toBe(2);
      expect(
        sample(body, 'nodeboot_step_duration_seconds_sum{outcome="succeeded",step="launchWorkloads"}'),
      ).toBeGreaterThanOrEqual(0);
      expect(
        sample(body, 'nodeboot_compensation_duration_seconds_count{result="succeeded",step="installOverlay"}'),
      ).toBe(1);
      const buckets = body
        .split('\n')
        .filter((l) =>
          l.startsWith('nodeboot_step_duration_seconds_bucket{outcome="succeeded",step="installOverlay",'),
        );
      const counts = buckets.map((l) => Number(l.split(' ')[1]));
      expect(counts).toEqual([...counts].sort((a, b) => a - b));

      expect((await fetch(`http://127.0.0.1:${server.port}/nope`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });

  it('workers/worker.ts serves our metrics and Temporal Core metrics on their ports and logs JSON lines', async () => {
    const db = await createTestDatabase('nbmetrics');
    const [ours, core] = [await freePort(), await freePort()];
    // worker-process.ts hands the worker this process's environment.
    process.env.NODEBOOT_METRICS_PORT = String(ours);
    process.env.NODEBOOT_TEMPORAL_METRICS_PORT = String(core);
    try {
      const w = await startWorkerProcess({
        taskQueue: uniqueTaskQueue('metrics-proc'),
        databaseUrl: db.url,
        temporalAddress: env.connection.options.address,
        namespace: env.namespace,
        name: 'metrics worker',
      });
      const polling = await w.waitFor(/^\{.*"msg":"worker polling".*\}$/m, 30_000);
      expect(JSON.parse(polling)).toMatchObject({
        level: 'INFO',
        metricsPort: ours,
        temporalMetricsPort: core,
        tracing: false,
      });

      const body = await scrape(ours);
      expect(sample(body, 'nodeboot_step_started_total{step="installOverlay"}')).toBe(0);
      // Core's exporter fills in once the worker polls.
      const coreBody = await eventually(
        async () => {
          const text = await (await fetch(`http://127.0.0.1:${core}/metrics`)).text();
          return /^temporal_\w+/m.test(text) ? text : undefined;
        },
        { what: 'Temporal Core metrics' },
      );
      expect(coreBody).toMatch(/^temporal_\w+\{/m);
      await w.stop();
    } finally {
      delete process.env.NODEBOOT_METRICS_PORT;
      delete process.env.NODEBOOT_TEMPORAL_METRICS_PORT;
      await stopAllWorkerProcesses();
      await db.drop();
    }
  });
});
