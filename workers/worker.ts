/**
 * The node-bootstrap worker: connects to the ledger (migrating it), then to
 * Temporal, and runs the provisioning workflows and their activities.
 *
 *   DATABASE_URL=postgres://... TEMPORAL_ADDRESS=127.0.0.1:7233 tsx workers/worker.ts
 */
import {
  NativeConnection,
  Runtime,
  Worker,
  makeTelemetryFilterString,
  type ActivityInterceptorsFactory,
  type TelemetryOptions,
} from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { createActivities } from '../activities/index.js';
import { Ledger } from '../inventory/index.js';
import { bowtieTrust, loadWorkerConfig, type WorkerConfig } from './config.js';
import { describeFaultPause, faultPauseInterceptor } from './fault-injection.js';
import { activityLoggingInterceptor, jsonLineLogger } from './logging.js';
import { metricsInterceptor, startMetricsServer, StepMetrics } from './metrics.js';
import { setupTracing, type Tracing } from './tracing.js';
import { WORKFLOW_BUNDLER_OPTIONS, WORKFLOWS_PATH } from './bundle.js';

export { WORKFLOWS_PATH };

/** Optional observability the entry point builds (tests build the worker without it). */
export interface WorkerObservability {
  metrics?: StepMetrics;
  tracing?: Tracing | null;
}

/** Build (but do not run) a worker; the caller owns `shutdown` and the ledger. */
export async function createWorker(
  config: WorkerConfig,
  obs: WorkerObservability = {},
): Promise<{ worker: Worker; ledger: Ledger; connection: NativeConnection }> {
  const bowtie = bowtieTrust(config); // a bad CA file fails the start, before any connection
  const ledger = await Ledger.connect(config.DATABASE_URL, { migrate: true });
  try {
    const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
    const faults = config.NODEBOOT_FAULT_PAUSE ?? [];
    if (faults.length)
      console.error(
        `[worker] WARNING: fault injection is ON (NODEBOOT_FAULT_PAUSE): ${faults.map(describeFaultPause).join('; ')}. Never set this outside tests.`,
      );
    // Outermost first: tracing spans and log context wrap the metrics, the fault pause is innermost.
    const activityInterceptors: ActivityInterceptorsFactory[] = [
      ...(obs.tracing ? [obs.tracing.activityInterceptor] : []),
      activityLoggingInterceptor(),
      ...(obs.metrics ? [metricsInterceptor(obs.metrics)] : []),
      ...faults.map((f) => faultPauseInterceptor(f)),
    ];
    const worker = await Worker.create({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      workflowsPath: WORKFLOWS_PATH,
      bundlerOptions: WORKFLOW_BUNDLER_OPTIONS,
      activities: createActivities({ ledger, bowtie, spireServerConfig: config.NODEBOOT_SPIRE_SERVER_CONFIG }),
      maxConcurrentActivityTaskExecutions: config.NODEBOOT_MAX_CONCURRENT_ACTIVITIES,
      interceptors: { activity: activityInterceptors },
      ...(obs.tracing ? { sinks: obs.tracing.sinks } : {}),
    });
    return { worker, ledger, connection };
  } catch (err) {
    await ledger.close();
    throw err;
  }
}

/**
 * Install the process-wide Temporal Runtime: JSON-line logger (Core's native
 * logs forwarded into it) and, when NODEBOOT_TEMPORAL_METRICS_PORT is set,
 * Core's Prometheus exporter. Must run before the first connection.
 */
export function installRuntime(config: WorkerConfig): void {
  const telemetryOptions: TelemetryOptions = {
    logging: { forward: {}, filter: makeTelemetryFilterString({ core: 'WARN', other: 'ERROR' }) },
  };
  if (config.NODEBOOT_TEMPORAL_METRICS_PORT > 0) {
    telemetryOptions.metrics = {
      prometheus: {
        bindAddress: `${hostForBind(config.NODEBOOT_METRICS_HOST)}:${config.NODEBOOT_TEMPORAL_METRICS_PORT}`,
      },
    };
  }
  Runtime.install({ logger: jsonLineLogger(config.NODEBOOT_LOG_LEVEL), telemetryOptions });
}

/** "::1" -> "[::1]" for a host:port bind address. */
function hostForBind(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

async function main() {
  const config = loadWorkerConfig();
  installRuntime(config);
  const log = Runtime.instance().logger;
  const tracing = await setupTracing(config);
  const metrics = new StepMetrics();
  const metricsServer =
    config.NODEBOOT_METRICS_PORT > 0
      ? await startMetricsServer(metrics, { port: config.NODEBOOT_METRICS_PORT, host: config.NODEBOOT_METRICS_HOST })
      : null;
  const { worker, ledger, connection } = await createWorker(config, { metrics, tracing });
  console.error(
    `[worker] polling ${config.TEMPORAL_TASK_QUEUE} on ${config.TEMPORAL_ADDRESS}/${config.TEMPORAL_NAMESPACE}`,
  );
  log.info('worker polling', {
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    namespace: config.TEMPORAL_NAMESPACE,
    metricsPort: metricsServer?.port ?? null,
    temporalMetricsPort: config.NODEBOOT_TEMPORAL_METRICS_PORT || null,
    tracing: tracing !== null,
  });
  try {
    await worker.run();
  } finally {
    await ledger.close();
    await connection.close();
    await metricsServer?.close();
    await tracing?.shutdown();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error(`[worker] ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
