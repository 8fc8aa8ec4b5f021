/**
 * How the worker bundles the workflow code: one place, so the worker, the
 * tests, the replay check and the benchmark run the same bundle.
 */
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/**
 * Modules every run in a workflow sandbox shares instead of evaluating afresh
 * (the sandbox deep-freezes their exports): common/sandbox-preload.ts, which
 * loads zod and the schema cache that lets runs share the input schemas
 * (common/schema-cache.ts). Only modules that keep no per-run state belong
 * here.
 */
export const WORKFLOW_PRELOAD_MODULES: readonly string[] = [
  fileURLToPath(new URL('../common/sandbox-preload.ts', import.meta.url)),
];

/** `Worker.create({ workflowsPath, bundlerOptions })` for a worker that bundles at start. */
export const WORKFLOW_BUNDLER_OPTIONS = { preloadModules: [...WORKFLOW_PRELOAD_MODULES] };

/** Bundle `workflowsPath` (default: the product's workflows) the way the worker does. */
export function bundleWorkflows(workflowsPath: string = WORKFLOWS_PATH): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN'), ...WORKFLOW_BUNDLER_OPTIONS });
}
