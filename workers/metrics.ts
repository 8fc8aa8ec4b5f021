/**
 * node-bootstrap's own Prometheus metrics: what the six steps and their
 * compensations did, by step, error type and result.
 *
 * Collected by an activity inbound interceptor keyed on the activity type (the
 * step names and the undo* names from activities/types.ts), so no step has to
 * remember to count itself. Served in the Prometheus text format (0.0.4) by a
 * tiny node:http endpoint on NODEBOOT_METRICS_PORT. Temporal's own runtime
 * metrics (task slots, poll latency, activity/workflow counters) are served by
 * the Core exporter on NODEBOOT_TEMPORAL_METRICS_PORT: two ports, each with one
 * honest owner, no dependency on prom-client.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { STEPS, UNDO_OF, type StepName } from '../common/steps.js';
import type { HealthReport } from '../common/health.js';
import { HealthGauges } from './health-metrics.js';

/** Seconds: steps range from a few ms (fakes, idempotent no-ops) to minutes (the peer-health gate). */
export const DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
] as const;

const STEP_SET: ReadonlySet<string> = new Set(STEPS);
const STEP_OF_UNDO: ReadonlyMap<string, StepName> = new Map(
  STEPS.flatMap((step) => {
    const undo = UNDO_OF[step];
    return undo ? [[undo, step] as const] : [];
  }),
);

/** What an activity type is to us: a step, the compensation of a step, or neither (recordEvent). */
export type ActivityKind =
  { kind: 'step'; step: StepName } | { kind: 'compensation'; step: StepName } | { kind: 'other' };

export function classifyActivity(activityType: string): ActivityKind {
  if (STEP_SET.has(activityType)) return { kind: 'step', step: activityType as StepName };
  const undone = STEP_OF_UNDO.get(activityType);
  return undone ? { kind: 'compensation', step: undone } : { kind: 'other' };
}

/** The failure's type as it will appear in history: ApplicationFailure.type, "Cancelled", or "unknown". */
export function errorTypeOf(err: unknown): string {
  if (err instanceof ApplicationFailure) return err.type ?? 'unknown';
  if (err instanceof CancelledFailure) return 'Cancelled';
  return 'unknown';
}

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabel(labels[k]!)}"`)
    .join(',');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatNumber(n: number): string {
  if (n === Number.POSITIVE_INFINITY) return '+Inf';
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(12)));
}

class Counter {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels, by = 1): void {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  get(labels: Labels): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [key, v] of this.values) out.push(`${this.name}${key ? `{${key}}` : ''} ${formatNumber(v)}`);
    return out;
  }
}

class Histogram {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[] = DURATION_BUCKETS,
  ) {}
  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    this.buckets.forEach((le, i) => {
      if (value <= le) s.counts[i]! += 1;
    });
    s.sum += value;
    s.count += 1;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.series) {
      const sep = key ? ',' : '';
      this.buckets.forEach((le, i) =>
        out.push(`${this.name}_bucket{${key}${sep}le="${formatNumber(le)}"} ${s.counts[i]}`),
      );
      out.push(`${this.name}_bucket{${key}${sep}le="+Inf"} ${s.count}`);
      out.push(`${this.name}_sum${key ? `{${key}}` : ''} ${formatNumber(s.sum)}`);
      out.push(`${this.name}_count${key ? `{${key}}` : ''} ${s.count}`);
    }
    return out;
  }
}

/** The registry the interceptor writes and the endpoint reads. One per worker process. */
export class StepMetrics {
  readonly stepsStarted = new Counter('nodeboot_step_started_total', 'Step attempts started, by step.');
  readonly stepsSucceeded = new Counter(
    'nodeboot_step_succeeded_total',
    'Step attempts that returned evidence, by step.',
  );
  readonly stepsFailed = new Counter(
    'nodeboot_step_failed_total',
    'Step attempts that failed, by step and error type (ApplicationFailure.type).',
  );
  readonly stepDuration = new Histogram(
    'nodeboot_step_duration_seconds',
    'Step attempt duration in seconds, by step and outcome (succeeded|failed).',
  );
  readonly compensations = new Counter(
    'nodeboot_compensations_total',
    'Compensation (undo) attempts, by the step undone and result (succeeded|failed).',
  );
  readonly compensationDuration = new Histogram(
    'nodeboot_compensation_duration_seconds',
    'Compensation attempt duration in seconds, by the step undone and result.',
  );
  /** Per-node gauges from checkNode results (workers/health-metrics.ts). */
  readonly health = new HealthGauges();

  constructor() {
    // Zero series for every step, so rate() works from the first scrape.
    for (const step of STEPS) {
      this.stepsStarted.inc({ step }, 0);
      this.stepsSucceeded.inc({ step }, 0);
    }
  }

  /** The Prometheus text exposition (format 0.0.4). */
  render(): string {
    const metrics = [
      this.stepsStarted,
      this.stepsSucceeded,
      this.stepsFailed,
      this.stepDuration,
      this.compensations,
      this.compensationDuration,
    ];
    return `${[...metrics.flatMap((m) => m.render()), ...this.health.render()].join('\n')}\n`;
  }
}

/**
 * Activity interceptor that counts every step and compensation attempt and
 * times it. Errors pass through untouched; other activities (recordEvent) are
 * not intercepted at all.
 */
export function metricsInterceptor(metrics: StepMetrics): ActivityInterceptorsFactory {
  return (ctx) => {
    if (ctx.info.activityType === 'checkNode') {
      // A check's result feeds the per-node gauges; a check that could not look changes nothing.
      return { inbound: { execute: async (input, next) => observed(metrics, (await next(input)) as HealthReport) } };
    }
    const what = classifyActivity(ctx.info.activityType);
    if (what.kind === 'other') return {};
    const { step } = what;
    return {
      inbound: {
        async execute(input, next) {
          const t0 = process.hrtime.bigint();
          const seconds = () => Number(process.hrtime.bigint() - t0) / 1e9;
          if (what.kind === 'step') metrics.stepsStarted.inc({ step });
          try {
            const result = await next(input);
            if (what.kind === 'step') {
              metrics.stepsSucceeded.inc({ step });
              metrics.stepDuration.observe({ step, outcome: 'succeeded' }, seconds());
            } else {
              metrics.compensations.inc({ step, result: 'succeeded' });
              metrics.compensationDuration.observe({ step, result: 'succeeded' }, seconds());
            }
            return result;
          } catch (err) {
            if (what.kind === 'step') {
              metrics.stepsFailed.inc({ step, error_type: errorTypeOf(err) });
              metrics.stepDuration.observe({ step, outcome: 'failed' }, seconds());
            } else {
              metrics.compensations.inc({ step, result: 'failed' });
              metrics.compensationDuration.observe({ step, result: 'failed' }, seconds());
            }
            throw err;
          }
        },
      },
    };
  };
}

export interface MetricsServer {
  /** The port actually bound (useful when asked for port 0). */
  port: number;
  close(): Promise<void>;
}

/** Serve `GET /metrics` on host:port (port 0: any free port). Everything else is a 404. */
export async function startMetricsServer(
  metrics: StepMetrics,
  opts: { port: number; host: string },
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if ((req.method === 'GET' || req.method === 'HEAD') && path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(req.method === 'HEAD' ? undefined : metrics.render());
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found: metrics are at /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}

function observed(metrics: StepMetrics, report: HealthReport): HealthReport {
  try {
    metrics.health.observe(report);
  } catch {
    // A malformed report must not fail the activity: the gauges just miss it.
  }
  return report;
}
