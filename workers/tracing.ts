/**
 * OpenTelemetry tracing through Temporal's interceptors, OFF unless
 * OTEL_EXPORTER_OTLP_ENDPOINT is set.
 *
 * The OTel packages are optional: they are loaded with a dynamic import only
 * when tracing is configured, so a worker without them installed runs as
 * before, and a worker configured for tracing without them fails at start
 * with a message that lists what to install (never silently untraced).
 *
 * What is wired: a span per activity execution (OpenTelemetryActivityInboundInterceptor),
 * exported over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (the exporter reads
 * the standard OTEL_* variables itself), plus the workflow span exporter sink.
 * Workflow-side spans additionally need a workflow interceptor module in the
 * bundle (interceptors.workflowModules) exporting the OpenTelemetry
 * inbound/outbound/internals interceptors; see docs/observability.md.
 */
import type { ActivityInterceptorsFactory, WorkerOptions } from '@temporalio/worker';

/** What to `npm install` for tracing; versions follow @temporalio/* (1.24.0) and OTel JS SDK 2.x / 0.2xx. */
export const TRACING_PACKAGES = [
  '@temporalio/interceptors-opentelemetry',
  '@opentelemetry/api',
  '@opentelemetry/resources',
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/sdk-trace-node',
  '@opentelemetry/exporter-trace-otlp-http',
] as const;

export interface TracingConfig {
  OTEL_EXPORTER_OTLP_ENDPOINT?: string | undefined;
  OTEL_SERVICE_NAME?: string | undefined;
}

export interface Tracing {
  activityInterceptor: ActivityInterceptorsFactory;
  sinks: NonNullable<WorkerOptions['sinks']>;
  shutdown(): Promise<void>;
}

export class TracingUnavailableError extends Error {
  constructor(missing: string, cause: unknown) {
    super(
      `tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT is set) but ${missing} cannot be loaded: ` +
        `install ${TRACING_PACKAGES.join(' ')} or unset OTEL_EXPORTER_OTLP_ENDPOINT`,
      { cause },
    );
    this.name = 'TracingUnavailableError';
  }
}

export function tracingEnabled(config: TracingConfig): boolean {
  return Boolean(config.OTEL_EXPORTER_OTLP_ENDPOINT);
}

// A variable specifier keeps tsc from resolving packages that are not installed.
async function load(name: string): Promise<Record<string, unknown>> {
  const specifier: string = name;
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (err) {
    throw new TracingUnavailableError(name, err);
  }
}

type Ctor = new (...args: unknown[]) => Record<string, (...a: unknown[]) => unknown>;

/** Set up tracing, or return null when it is not configured. */
export async function setupTracing(config: TracingConfig): Promise<Tracing | null> {
  if (!tracingEnabled(config)) return null;
  const temporalOtel = await load('@temporalio/interceptors-opentelemetry');
  const resources = await load('@opentelemetry/resources');
  const traceBase = await load('@opentelemetry/sdk-trace-base');
  const traceNode = await load('@opentelemetry/sdk-trace-node');
  const otlp = await load('@opentelemetry/exporter-trace-otlp-http');

  const serviceName = config.OTEL_SERVICE_NAME ?? 'node-bootstrap-worker';
  const resourceFromAttributes = resources.resourceFromAttributes as
    ((attrs: Record<string, string>) => unknown) | undefined;
  const resource = resourceFromAttributes
    ? resourceFromAttributes({ 'service.name': serviceName })
    : new (resources.Resource as Ctor)({ 'service.name': serviceName });
  // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and headers, timeouts) itself.
  const exporter = new (otlp.OTLPTraceExporter as Ctor)();
  const processor = new (traceBase.BatchSpanProcessor as Ctor)(exporter);
  const provider = new (traceNode.NodeTracerProvider as Ctor)({ resource, spanProcessors: [processor] });
  provider.register!();

  const ActivityInbound = temporalOtel.OpenTelemetryActivityInboundInterceptor as new (ctx: unknown) => object;
  const makeWorkflowExporter = temporalOtel.makeWorkflowExporter as (exporter: unknown, resource: unknown) => unknown;
  return {
    activityInterceptor: (ctx) => ({ inbound: new ActivityInbound(ctx) }),
    sinks: { exporter: makeWorkflowExporter(exporter, resource) } as NonNullable<WorkerOptions['sinks']>,
    shutdown: async () => {
      await (provider.shutdown!() as Promise<void>);
    },
  };
}
