/**
 * npm run bench [-- --only p1,p2,p3] [--pairs 11] [--sizes 1,10,25,50] [--sync-sweep 2000,5000] [--sim 100,1000] [--repeats 2] [--large-repeats 1] [--profile-size 100] [--out bench/results]
 *
 *   --sizes is P2's fleet sizes (--fleet is the older name for it); e.g. only P2 at 1 and 10 nodes:
 *   npm run bench -- --only p2 --sizes 1,10 --update
 *
 * The benchmark (not a test: nothing here passes or fails). Writes
 * <out>/report.md and <out>/report.json:
 * - P1 overhead: one lab node through Temporal vs the same steps as a plain
 *   sequential script (bench/plain-script.ts), alternating, in the same run.
 * - P2 fleet: 1..50 lab nodes provisioned concurrently by provisionFleet:
 *   wall time, nodes per minute, peak memory per node, CPU per node by
 *   process class; then 1 node and the largest fleet again with each agent
 *   sync interval of --sync-sweep ('0': none).
 * - P3 orchestration: 100 and 1000 simulated nodes (instant activities,
 *   bench/instant-activities.ts) through provisionFleet on the real dev server.
 * Targets are printed beside the numbers, never asserted.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  bundleWorkflowCode,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { Ledger } from '../inventory/index.js';
import type { FleetInputJson } from '../common/fleet.js';
import { fleetWorkflowId, provisionWorkflowId } from '../common/ids.js';
import { ProvisionInput, type ProvisionInputJson } from '../common/input.js';
import { STEPS, type StepName } from '../common/steps.js';
import { labProvisionInput, labWorkloadSpec } from '../lab/inputs.js';
import { Lab } from '../lab/lab.js';
import { DEV_SERVER_DYNAMIC_CONFIG, startDevServer, type DevServerHandle } from '../lab/temporal.js';
import type { FleetResult, ProvisionReceipt } from '../common/definitions.js';
import type { provisionFleet, provisionNode } from '../workflows/index.js';
import { bareActivities, type bareNode } from './bare-workflow.js';
import { ABLATION_STAGES, ablationActivities, type AblationStage } from './ablation-workflow.js';
import { instantActivities } from './instant-activities.js';
import {
  CPU_CLASSES,
  backgroundCpu,
  cpuSampler,
  mb,
  peakSampler,
  sec,
  summarize,
  type Classifier,
  type CpuSample,
  type MemorySample,
  type RunTimeline,
  type Summary,
  runTimeline,
} from './measure.js';
import { commandsStarted } from '../activities/host/exec.js';
import { plainProvision, plainTeardown } from './plain-script.js';
import { renderReport } from './report.js';
import { bundleWorkflows } from '../workers/bundle.js';
import { measureFloors, type Floors } from './floors.js';
import { nodePaths } from '../common/paths.js';
import { createTestDatabase } from '../test/helpers/database.js';
import type { temporal } from '@temporalio/proto';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WORKFLOWS_PATH = path.join(repoRoot, 'workflows/index.ts');
const TRUST_DOMAIN = 'bench.nodeboot.test';
const REAL_QUEUE = 'bench-real';
const SIM_QUEUE = 'bench-sim';
const BARE_QUEUE = 'bench-bare';
const BARE_WORKFLOWS_PATH = path.join(repoRoot, 'bench/bare-workflow.ts');
const ABLATION_QUEUE = 'bench-ablation';
const ABLATION_WORKFLOWS_PATH = path.join(repoRoot, 'bench/ablation-workflow.ts');

const { values: opts } = parseArgs({
  options: {
    only: { type: 'string', default: 'p1,p2,p3' },
    // 11: the ratio of one pair swings with where each run lands in the agent's sync period (launchWorkloads), so the median needs more than a handful.
    pairs: { type: 'string', default: '11' },
    sizes: { type: 'string' },
    fleet: { type: 'string', default: '1,10,25,50' },
    // P2 again, once at 1 node and once at its largest size, with the agents syncing this often (ms); '0': none.
    'sync-sweep': { type: 'string', default: '2000,5000' },
    sim: { type: 'string', default: '100,1000' },
    repeats: { type: 'string', default: '2' },
    // The largest sizes (P2 ≥ 50 nodes, P3 ≥ 1000) take minutes each: once by default, to stay within 20 minutes.
    'large-repeats': { type: 'string', default: '1' },
    // P3's cost profile (bare, the ablation stages, provisionNode, fleet) at this many nodes; 0: none.
    'profile-size': { type: 'string', default: '100' },
    out: { type: 'string', default: path.join(repoRoot, 'bench/results') },
    // Keep the parts of an existing <out>/report.json that this run does not measure.
    update: { type: 'boolean', default: false },
  },
});
const only = new Set(opts.only.split(','));
const fleetSizes = opts.sizes ?? opts.fleet;
const ints = (s: string) =>
  s
    .split(',')
    .map((x) => Number.parseInt(x, 10))
    .filter((n) => n > 0);
const repeatsFor = (n: number, large: number, repeats: number) =>
  n >= large ? Number(opts['large-repeats']) : repeats;
const log = (line: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);

// --- report shapes ------------------------------------------------------------------------

export interface P1Pair {
  order: 'temporal-first' | 'plain-first';
  temporalMs: number;
  plainMs: number;
  temporalStepsMs: Record<StepName, number>;
  plainStepsMs: Record<StepName, number>;
}
export interface P1Report {
  pairs: P1Pair[];
  temporal: Summary;
  plain: Summary;
  /** Median of the per-pair ratios temporal / plain. */
  ratio: Summary;
  steps: { step: StepName; temporalMedianMs: number; plainMedianMs: number }[];
  /** Temporal wall time not spent inside a step: scheduling, workflow tasks, ledger events. */
  orchestrationMedianMs: number;
  /** Each step's floor, from primitives measured on their own (bench/floors.ts). */
  floors?: Floors;
  /**
   * Temporal's own floor for a six-step run here: the bare workflow (six no-op
   * activities, bench/bare-workflow.ts) started one at a time through the same
   * server, on a worker with the same settings as the real one, start to result.
   */
  bare?: P1BareFloor;
  /** The same bare runs on a server with the stock transfer-queue poll rate (STOCK_TRANSFER_POLL_RPS). */
  bareStock?: P1BareFloor;
}
export interface P1BareFloor {
  /** The server's history.transferProcessorMaxPollRPS for these runs. */
  transferPollRps: number;
  /** Start call to result. */
  wall: Summary;
  /** Where a run's time went by its history (bench/measure.ts runTimeline), medians over the runs. */
  timeline: {
    dispatchMs: number;
    workflowTaskMs: number;
    activityMs: number;
    /** The history's first event to its last. */
    historyMs: number;
    workflowTasks: number;
  };
}
export interface P2Run {
  nodes: number;
  wallMs: number;
  nodesPerMinute: number;
  succeeded: number;
  failed: number;
  peak: MemorySample;
  peakPerNodeBytes: number;
  medianStepMs: Record<StepName, number>;
  /** CPU by process class over the provisioning window (bench/measure.ts cpuSampler). */
  cpu?: CpuSample;
  /** Programs the worker started per node in the window, by name (activities/host/exec.ts commandsStarted). */
  commandsPerNode?: Record<string, number>;
  /** The agents' sync interval of this run (spire.agentSyncIntervalMs; the lab's, LAB_AGENT_SYNC_MS, unless swept). */
  agentSyncIntervalMs?: number;
}
export interface P3Run {
  nodes: number;
  window: number;
  wallMs: number;
  nodesPerSecond: number;
  /** Workflow executions (node runs + fleet runs) per second. */
  workflowsPerSecond: number;
  fleetRuns: number;
  succeeded: number;
  /** CPU time during the run: this process (the worker, plus the client) and the dev server. */
  cpu: { workerMs: number; serverMs: number };
  /** Wall time over the bare baseline's: the mean of the bare runs just before and just after it (p3). */
  bareRatio: number;
  /** That mean; absent in reports from before the baseline bracketed each run (bare before only). */
  bareWallMs?: number;
  /** One provisionNode run's history, counted. */
  history?: HistoryShape;
  /** The fleet's own (parent) run, its last one: counted, and where its time went. */
  fleetHistory?: HistoryShape & { timeline: RunTimeline };
}
/** The P3 baseline: `nodes` bare workflows (six no-op activities each, bench/bare-workflow.ts), `window` at a time. */
export interface P3BareRun {
  nodes: number;
  window: number;
  wallMs: number;
  workflowsPerSecond: number;
  /** Its place among the bare runs of its size: real run k is measured between bare runs k and k+1. Absent before bracketing: bare run k was just before real run k. */
  seq?: number;
  cpu: { workerMs: number; serverMs: number };
  history?: HistoryShape;
}
/** One row of P3's cost profile: a variant of the run and what it cost per node. */
export interface P3ProfileRow {
  variant: 'bare' | AblationStage | 'provisionNode' | 'fleet' | 'bareAgain';
  nodes: number;
  window: number;
  wallMs: number;
  cpu: { workerMs: number; serverMs: number };
  history?: HistoryShape;
}
export interface HistoryShape {
  events: number;
  workflowTasks: number;
  activityTasks: number;
  /** Local-activity results and patch markers. */
  markers: number;
  upserts: number;
  /** Start + close + one per upsert. */
  visibilityWrites: number;
}
export interface BenchReport {
  startedAt: string;
  /** With --update: the parts kept from the report before, and when that run started. */
  carriedOver?: { parts: string[]; from: string };
  finishedAt: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; kernel: string; node: string; load1: number };
  /** Dev server settings beyond lab/temporal.ts's defaults (NB_BENCH_DYNAMIC_CONFIG, NB_BENCH_MEMORY); absent: stock. */
  server?: { dynamicConfig?: Record<string, unknown>; inMemory?: boolean };
  versions: Record<string, string>;
  p1?: P1Report;
  p2?: {
    runs: P2Run[];
    bySize: { nodes: number; wall: Summary; nodesPerMinute: Summary; peakPerNodeMiB: Summary }[];
    /** The same fleets with other agent sync intervals (--sync-sweep): one run at 1 node, one at the largest size. */
    syncSweep?: P2Run[];
  };
  p3?: {
    runs: P3Run[];
    bare?: P3BareRun[];
    /** Where a run's cost over the bare baseline goes (p3Profile). */
    profile?: P3ProfileRow[];
    bySize: { nodes: number; wall: Summary; workflowsPerSecond: Summary; bareWall?: Summary; bareRatio?: Summary }[];
  };
}

// --- set-up ---------------------------------------------------------------------------------

interface Bench {
  server: DevServerHandle;
  client: Client;
  connection: Connection;
  native: NativeConnection;
  bundle: WorkflowBundleWithSourceMap;
  ledger: Ledger;
  dropDatabase(): Promise<void>;
  databaseName: string;
  dir: string;
}

/**
 * Server settings over lab/temporal.ts's, to try one on every part alike, e.g.
 * NB_BENCH_DYNAMIC_CONFIG='{"system.enableActivityEagerExecution":false}'.
 */
function benchDynamicConfig(): Record<string, unknown> {
  return process.env.NB_BENCH_DYNAMIC_CONFIG
    ? (JSON.parse(process.env.NB_BENCH_DYNAMIC_CONFIG) as Record<string, unknown>)
    : {};
}

/** The server's own default for history.transferProcessorMaxPollRPS (P1's stock floor). */
const STOCK_TRANSFER_POLL_RPS = 20;

async function setUp(): Promise<Bench> {
  Runtime.install({ logger: new DefaultLogger(process.env.NB_BENCH_LOG === 'warn' ? 'WARN' : 'ERROR') });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nb-bench-'));
  log('starting the Temporal dev server (SQLite file, headless)');
  const server = await startDevServer({
    headless: true,
    ...(process.env.NB_BENCH_MEMORY ? {} : { dbFilename: path.join(dir, 'temporal.db') }),
    dynamicConfig: benchDynamicConfig(),
    logFile: path.join(dir, 'server.log'),
  });
  const connection = await Connection.connect({ address: server.address });
  const native = await NativeConnection.connect({ address: server.address });
  const bundle = await bundleWorkflows(WORKFLOWS_PATH);
  // A database of its own, dropped at the end (the test suite's helper).
  const db = await createTestDatabase('nbbench');
  const ledger = await Ledger.connect(db.url, { migrate: true });
  return {
    server,
    client: new Client({ connection }),
    connection,
    native,
    bundle,
    ledger,
    dir,
    databaseName: db.name,
    dropDatabase: () => db.drop(),
  };
}

/** Run a worker on `taskQueue` for as long as `fn` runs. */
async function withWorker<T>(
  b: Bench,
  taskQueue: string,
  activities: object,
  fn: () => Promise<T>,
  tuning: Partial<Parameters<typeof Worker.create>[0]> = {},
): Promise<T> {
  const worker = await Worker.create({
    connection: b.native,
    taskQueue,
    workflowBundle: b.bundle,
    activities,
    ...tuning,
  });
  return worker.runUntil(fn);
}

function benchWorkload(nodeId: string) {
  return [{ name: 'api', spiffePath: `/bench/${nodeId}/api`, uid: 61001, port: 8443 }];
}

// --- P1 ---------------------------------------------------------------------------------------

async function p1(b: Bench, pairs: number): Promise<P1Report> {
  const lab = await Lab.up({ nodes: 1, trustDomain: TRUST_DOMAIN, ephemeral: true, log: (l) => log(`[lab] ${l}`) });
  const acts = createActivities({ ledger: b.ledger });
  const inputFor = (nodeId: string): ProvisionInputJson =>
    labProvisionInput(lab, 'n1', { nodeId, workloads: benchWorkload(nodeId) });
  const out: P1Pair[] = [];
  let floors: Floors | undefined;
  let bare: P1BareFloor | undefined;
  let bareStock: P1BareFloor | undefined;
  try {
    await withWorker(b, REAL_QUEUE, acts, async () => {
      for (let i = 0; i < pairs; i++) {
        const order = i % 2 === 0 ? 'temporal-first' : 'plain-first';
        const viaTemporal = async () => {
          const input = inputFor(`p1-t${i}-${Date.now().toString(36)}`);
          const t0 = performance.now();
          const handle = await b.client.workflow.start<typeof provisionNode>('provisionNode', {
            taskQueue: REAL_QUEUE,
            workflowId: provisionWorkflowId(input.nodeId as string),
            args: [input],
          });
          const receipt: ProvisionReceipt = await handle.result();
          const ms = performance.now() - t0;
          await plainTeardown(acts, ProvisionInput.parse(input), handle.workflowId, receipt.runId);
          return { ms, steps: receipt.durationsMs };
        };
        const viaScript = async () => {
          const run = await plainProvision(acts, inputFor(`p1-p${i}-${Date.now().toString(36)}`), `plain-${i}`);
          await plainTeardown(acts, run.input, `plain/${run.input.nodeId}`, `plain-${i}`);
          return { ms: run.wallMs, steps: run.stepsMs };
        };
        let t: { ms: number; steps: Record<StepName, number> };
        let p: { ms: number; steps: Record<StepName, number> };
        if (order === 'temporal-first') {
          t = await viaTemporal();
          p = await viaScript();
        } else {
          p = await viaScript();
          t = await viaTemporal();
        }
        const pair: P1Pair = {
          order,
          temporalMs: t.ms,
          plainMs: p.ms,
          temporalStepsMs: t.steps,
          plainStepsMs: p.steps,
        };
        out.push(pair);
        log(`P1 pair ${i + 1}/${pairs} (${order}): temporal ${sec(pair.temporalMs)} s, plain ${sec(pair.plainMs)} s`);
      }
    });
    const rps = { ...DEV_SERVER_DYNAMIC_CONFIG, ...benchDynamicConfig() }['history.transferProcessorMaxPollRPS'];
    bare = await p1BareFloor(b, pairs, typeof rps === 'number' ? rps : STOCK_TRANSFER_POLL_RPS);
    log(`P1 bare floor: median ${bare.wall.median.toFixed(0)} ms (${pairs} runs) ${JSON.stringify(bare.timeline)}`);
    bareStock = await p1BareFloorStock(b, pairs);
    log(
      `P1 bare floor, stock transfer poll rate: median ${bareStock.wall.median.toFixed(0)} ms ${JSON.stringify(bareStock.timeline)}`,
    );
    // The floors, on a node provisioned once more (tunnel up, agent holding the workload's SVID).
    const { input } = await plainProvision(acts, inputFor(`p1-floor-${Date.now().toString(36)}`), 'floor');
    try {
      floors = await measureFloors(lab, 'n1', {
        agentSocket: nodePaths(input).agentSocket,
        uid: input.workloads[0]!.uid,
        scratchDir: path.join(b.dir, 'floors'),
      });
      log(`P1 floors: ${JSON.stringify(floors)}`);
    } catch (err) {
      log(`P1 floors not measured: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await plainTeardown(acts, input, `plain/${input.nodeId}`, 'floor');
    }
  } finally {
    await lab.down();
  }
  const median = (xs: number[]) => summarize(xs).median;
  const steps = STEPS.map((step) => ({
    step,
    temporalMedianMs: median(out.map((p) => p.temporalStepsMs[step])),
    plainMedianMs: median(out.map((p) => p.plainStepsMs[step])),
  }));
  return {
    pairs: out,
    temporal: summarize(out.map((p) => p.temporalMs)),
    plain: summarize(out.map((p) => p.plainMs)),
    ratio: summarize(out.map((p) => p.temporalMs / p.plainMs)),
    steps,
    orchestrationMedianMs: median(out.map((p) => p.temporalMs - STEPS.reduce((s, st) => s + p.temporalStepsMs[st], 0))),
    ...(floors ? { floors } : {}),
    ...(bare ? { bare } : {}),
    ...(bareStock ? { bareStock } : {}),
  };
}

/**
 * P1's Temporal floor: `runs` bare workflows, one after another, each timed
 * from its start call to its result, with where each run's time went by its
 * history (medians over the runs).
 */
async function p1BareFloor(
  server: Pick<Bench, 'client' | 'native'>,
  runs: number,
  transferPollRps: number,
): Promise<P1BareFloor> {
  const taskQueue = `${BARE_QUEUE}-p1`;
  const tag = `p1bare-${Date.now().toString(36)}`;
  const ms: number[] = [];
  const timelines: RunTimeline[] = [];
  // The P1 worker's settings (none), not P3's tuning.
  await withBundleWorker(server, await bareBundle(), taskQueue, bareActivities(), {}, async () => {
    for (let i = 0; i <= runs; i++) {
      const t0 = performance.now();
      const h = await server.client.workflow.start<typeof bareNode>('bareNode', {
        taskQueue,
        workflowId: `${tag}-${i}`,
        args: [0],
      });
      await h.result();
      if (i === 0) continue; // the first one warms the worker up (its bundle, its connections)
      ms.push(performance.now() - t0);
      timelines.push(runTimeline((await h.fetchHistory()).events ?? []));
    }
  });
  const median = (pick: (t: RunTimeline) => number) => summarize(timelines.map(pick)).median;
  return {
    transferPollRps,
    wall: summarize(ms),
    timeline: {
      dispatchMs: median((t) => t.dispatchMs),
      workflowTaskMs: median((t) => t.workflowTaskMs),
      activityMs: median((t) => t.activityMs),
      historyMs: median((t) => t.totalMs),
      workflowTasks: median((t) => t.workflowTasks),
    },
  };
}

/**
 * The bare floor again on a dev server of its own with the server's stock
 * transfer-queue poll rate (lab/temporal.ts TRANSFER_POLL_RPS): what the lab's
 * setting saves a run that goes one step at a time.
 */
async function p1BareFloorStock(b: Bench, runs: number): Promise<P1BareFloor> {
  const server = await startDevServer({
    headless: true,
    ...(process.env.NB_BENCH_MEMORY ? {} : { dbFilename: path.join(b.dir, 'temporal-stock.db') }),
    dynamicConfig: { ...benchDynamicConfig(), 'history.transferProcessorMaxPollRPS': STOCK_TRANSFER_POLL_RPS },
    logFile: path.join(b.dir, 'server-stock.log'),
  });
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  try {
    return await p1BareFloor({ client: new Client({ connection }), native }, runs, STOCK_TRANSFER_POLL_RPS);
  } finally {
    await connection.close();
    await native.close();
    await server.stop();
  }
}

// --- P2 ---------------------------------------------------------------------------------------

async function p2(b: Bench, sizes: number[], repeats: number, agentSyncIntervalMs?: number): Promise<P2Run[]> {
  const runs: P2Run[] = [];
  const acts = createActivities({ ledger: b.ledger });
  await withWorker(
    b,
    REAL_QUEUE,
    acts,
    async () => {
      for (const n of sizes) {
        const times = agentSyncIntervalMs === undefined ? repeatsFor(n, 50, repeats) : repeats;
        for (let r = 0; r < times; r++) {
          const lab = await Lab.up({ nodes: n, trustDomain: TRUST_DOMAIN, ephemeral: true, log: () => undefined });
          try {
            const tag = `p2-${n}-${r}-${Date.now().toString(36)}`;
            const template = labProvisionInput(lab, 'n1', { nodeId: 'template' });
            const { nodeId: _n, host: _h, nodeDir: _d, workloads: _w, ...defaults } = template;
            const syncMs = agentSyncIntervalMs ?? template.spire.agentSyncIntervalMs;
            const fleet: FleetInputJson = {
              fleetId: tag,
              defaults: { ...defaults, spire: { ...defaults.spire, agentSyncIntervalMs: syncMs } },
              nodes: lab.nodes.map((node, k) => {
                const nodeId = `${tag}-${k + 1}`;
                const workloads = benchWorkload(nodeId).map((w) =>
                  labWorkloadSpec(lab, { nodeId, nodeDir: node.dir }, w),
                );
                return { nodeId, host: { kind: 'netns', netns: node.netns }, nodeDir: node.dir, workloads };
              }),
              window: n,
              failureBudget: { maxFailedPercent: 100 },
            };
            const sampler = peakSampler(lab.nodes.map((x) => x.netns));
            const backgroundMsPerS = await backgroundCpu(classifier(b, lab));
            const commands0 = { ...commandsStarted };
            const cpu = cpuSampler(classifier(b, lab));
            const t0 = performance.now();
            const result = await startFleetAndWait(b, fleet, REAL_QUEUE);
            const wallMs = performance.now() - t0;
            const cpuSample = { ...cpu.stop(), backgroundMsPerS };
            const peak = sampler.stop();
            const commandsPerNode = Object.fromEntries(
              Object.entries(commandsStarted)
                .map(([k, v]) => [k, (v - (commands0[k] ?? 0)) / n] as const)
                .filter(([, v]) => v > 0)
                .sort((x, y) => y[1] - x[1]),
            );
            const stepsMs = await childStepDurations(b, fleet);
            const run: P2Run = {
              nodes: n,
              wallMs,
              nodesPerMinute: (result.counts.succeeded / wallMs) * 60_000,
              succeeded: result.counts.succeeded,
              failed: result.counts.failed,
              peak,
              peakPerNodeBytes: peak.totalBytes / n,
              medianStepMs: stepsMs,
              cpu: cpuSample,
              commandsPerNode,
              ...(syncMs !== undefined ? { agentSyncIntervalMs: syncMs } : {}),
            };
            runs.push(run);
            const perNode = (ms: number) => (ms / n / 1000).toFixed(2);
            log(
              `P2 ${n} nodes (run ${r + 1}/${times}${agentSyncIntervalMs ? `, agents syncing every ${agentSyncIntervalMs} ms` : ''}): ${sec(wallMs)} s, ${run.succeeded} ok / ${run.failed} failed, peak ${mb(run.peakPerNodeBytes)} MiB per node; ` +
                `CPU-s per node: machine ${perNode(cpuSample.machineMs)} (${CPU_CLASSES.map((c) => `${c} ${perNode(cpuSample.byClass[c])}`).join(', ')}, unattributed ${perNode(cpuSample.unattributedMs)}, of which background ${perNode(backgroundMsPerS * (wallMs / 1000))}); ` +
                `${Object.values(commandsPerNode)
                  .reduce((a, x) => a + x, 0)
                  .toFixed(1)} programs per node`,
            );
          } finally {
            await lab.down();
          }
        }
      }
    },
    // Fifty nodes' long steps at once: let every one of them run.
    { maxConcurrentActivityTaskExecutions: 400 },
  );
  return runs;
}

/**
 * Which process is which, for the CPU accounting (bench/measure.ts cpuSampler):
 * the worker is this process (its reaped children are the short-lived tools it
 * ran), the dev server and the lab's SPIRE server by pid, agents and
 * wireguard-go by program, the workloads by the lab's demo program (their
 * reaped children, if a workload program has any, counted with them), PostgreSQL
 * backends by the bench ledger's database name.
 */
function classifier(b: Bench, lab: Lab): Classifier {
  const spirePid = lab.spire?.pid;
  return (pid, comm, cmdline) => {
    if (pid === process.pid) return { cls: 'worker', children: 'tools' };
    if (pid === b.server.pid) return { cls: 'devServer', children: 'devServer' };
    if (pid === spirePid || (comm === 'spire-server' && cmdline[1] === 'run'))
      return { cls: 'spireServer', children: 'spireServer' };
    if (comm === 'spire-agent' && cmdline[1] === 'run') return { cls: 'agents' };
    if (comm === 'wireguard-go') return { cls: 'wireguardGo' };
    if (cmdline.includes(lab.demoWorkload)) return { cls: 'workloads', children: 'workloads' };
    if (comm === 'postgres' && (cmdline[0] ?? '').includes(b.databaseName)) return { cls: 'postgres' };
    return undefined;
  };
}

async function startFleetAndWait(b: Bench, fleet: FleetInputJson, taskQueue: string): Promise<FleetResult> {
  const handle = await b.client.workflow.start<typeof provisionFleet>('provisionFleet', {
    taskQueue,
    workflowId: fleetWorkflowId(fleet.fleetId),
    args: [fleet],
  });
  return handle.result();
}

/** Median duration of each step over the fleet's node runs (from their receipts). */
async function childStepDurations(b: Bench, fleet: FleetInputJson): Promise<Record<StepName, number>> {
  const receipts: ProvisionReceipt[] = [];
  for (const node of fleet.nodes) {
    const r = await b.client.workflow
      .getHandle<typeof provisionNode>(provisionWorkflowId(node.nodeId))
      .result()
      .catch(() => null);
    if (r) receipts.push(r);
  }
  return Object.fromEntries(STEPS.map((s) => [s, summarize(receipts.map((r) => r.durationsMs[s])).median])) as Record<
    StepName,
    number
  >;
}

// --- P3 ---------------------------------------------------------------------------------------

/** One worker setting for the real P3 run and its bare baseline, so the ratio compares workflows, not tuning. */
const P3_TUNING = {
  maxConcurrentActivityTaskExecutions: 400,
  maxConcurrentWorkflowTaskExecutions: 100,
  maxCachedWorkflows: 2000,
} as const;

async function p3(b: Bench, sizes: number[], repeats: number): Promise<{ runs: P3Run[]; bare: P3BareRun[] }> {
  const runs: P3Run[] = [];
  const bare: P3BareRun[] = [];
  const template = simulatedTemplate();
  for (const n of sizes) {
    const times = repeatsFor(n, 1000, repeats);
    const window = Math.min(n, 200);
    // Bare and real runs alternate, bare first and last: each real run is compared with the
    // mean of the bare runs just before and just after it. The server gets slower as it fills
    // (a bare run after 2000 more workflows costs it ~1.35x the CPU), so a baseline taken
    // only before would count that drift against the real run.
    const before0 = await p3Bare(b, n, window, 0);
    bare.push(before0);
    let before = before0;
    for (let r = 0; r < times; r++) {
      const measured = await p3Real(b, template, n, window, r);
      const after = await p3Bare(b, n, window, r + 1);
      bare.push(after);
      const bareWallMs = (before.wallMs + after.wallMs) / 2;
      const run: P3Run = { ...measured, bareWallMs, bareRatio: measured.wallMs / bareWallMs };
      runs.push(run);
      log(
        `P3 ${n} simulated nodes (run ${r + 1}/${times}): ${sec(run.wallMs)} s, ${run.workflowsPerSecond.toFixed(1)} workflows/s, ${run.fleetRuns} fleet run(s), ${run.bareRatio.toFixed(2)}× the bare runs around it (${sec(before.wallMs)} s before, ${sec(after.wallMs)} s after); CPU per node: worker ${(run.cpu.workerMs / n).toFixed(0)} ms, server ${(run.cpu.serverMs / n).toFixed(0)} ms`,
      );
      before = after;
    }
  }
  return { runs, bare };
}

/** One bare baseline run of `n` workflows: the `seq`-th of its size (real run k sits between bare k and k+1). */
async function p3Bare(b: Bench, n: number, window: number, seq: number): Promise<P3BareRun> {
  const tag = `p3bare-${n}-${seq}-${Date.now().toString(36)}`;
  const run: P3BareRun = await withBundleWorker(
    b,
    await bareBundle(),
    BARE_QUEUE,
    bareActivities(),
    P3_TUNING,
    async () => {
      // Each worker runs one of its workflows before the measured window (bare and real alike): its
      // first workflow task loads the bundle into the sandbox, a cost per worker, not per node.
      await bareWorkflows(b, `${tag}-warm`, 1, 1);
      const m = await measureCpu(b, () => bareWorkflows(b, tag, n, window));
      return { nodes: n, window, seq, wallMs: m.wallMs, workflowsPerSecond: (n / m.wallMs) * 1000, cpu: m.cpu };
    },
  );
  run.history = await historyShape(b, `${tag}-1`);
  log(
    `P3 bare ${n} workflows (bare run ${seq + 1}): ${sec(run.wallMs)} s, ${run.workflowsPerSecond.toFixed(1)} workflows/s, CPU per workflow: worker ${(run.cpu.workerMs / n).toFixed(0)} ms, server ${(run.cpu.serverMs / n).toFixed(0)} ms`,
  );
  return run;
}

/** A real run as measured, before p3 compares it with the bare runs around it. */
type P3Measured = Omit<P3Run, 'bareRatio' | 'bareWallMs'>;

/** One real run: `n` simulated nodes as one provisionFleet, `window` at a time. */
async function p3Real(
  b: Bench,
  template: Record<string, unknown>,
  n: number,
  window: number,
  r: number,
): Promise<P3Measured> {
  const tag = `p3-${n}-${r}-${Date.now().toString(36)}`;
  const fleet: FleetInputJson = {
    fleetId: tag,
    defaults: template,
    // One nodeDir per node: two nodes on one host may not share one (common/fleet.ts).
    nodes: Array.from({ length: n }, (_, k) => ({
      nodeId: `${tag}-${k + 1}`,
      nodeDir: `/var/lib/node-bootstrap/${tag}-${k + 1}`,
    })),
    window,
  };
  const run: P3Measured = await withWorker(
    b,
    SIM_QUEUE,
    instantActivities(),
    async () => {
      await startFleetAndWait(b, warmUpFleet(`${tag}-warm`), SIM_QUEUE);
      const m = await measureCpu(b, () => startFleetAndWait(b, fleet, SIM_QUEUE));
      return {
        cpu: m.cpu,
        nodes: n,
        window,
        wallMs: m.wallMs,
        nodesPerSecond: (n / m.wallMs) * 1000,
        workflowsPerSecond: ((n + m.value.generation) / m.wallMs) * 1000,
        fleetRuns: m.value.generation,
        succeeded: m.value.counts.succeeded,
      };
    },
    P3_TUNING,
  );
  run.history = await historyShape(b, provisionWorkflowId(`${tag}-1`));
  run.fleetHistory = await fleetHistoryShape(b, fleetWorkflowId(fleet.fleetId));
  return run;
}

/** A fleet of one simulated node: it warms a fresh worker before a measured run (see p3). */
function warmUpFleet(fleetId: string): FleetInputJson {
  return {
    fleetId,
    defaults: simulatedTemplate(),
    nodes: [{ nodeId: `${fleetId}-1`, nodeDir: `/var/lib/node-bootstrap/${fleetId}-1` }],
    window: 1,
  };
}

/** `n` bare workflows started by the client, `window` at a time (the fleet's window), each awaited. */
async function bareWorkflows(b: Bench, tag: string, n: number, window: number): Promise<void> {
  await startMany(b, n, window, (k) =>
    b.client.workflow.start<typeof bareNode>('bareNode', {
      taskQueue: BARE_QUEUE,
      workflowId: `${tag}-${k}`,
      args: [0],
    }),
  );
}

/** Start `n` workflows, `window` at a time, each awaited before its lane starts the next. */
async function startMany(
  b: Bench,
  n: number,
  window: number,
  start: (k: number) => Promise<{ result(): Promise<unknown> }>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const handle = await start(++next);
      await handle.result();
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
}

/**
 * P3's cost profile at `n` nodes: the bare baseline, then the ablation
 * workflow's stages (bench/ablation-workflow.ts: provisionNode's parts added
 * back one at a time), then provisionNode started by the client like the
 * baseline, then the same nodes as one provisionFleet (the P3 run), then the
 * bare baseline again (the server's drift as it fills). Each row is one
 * measurement on the same server, one after the other.
 */
async function p3Profile(b: Bench, n: number): Promise<P3ProfileRow[]> {
  const window = Math.min(n, 200);
  const rows: P3ProfileRow[] = [];
  const input = ProvisionInput.parse({ ...simulatedTemplate(), nodeId: 'profile-1' });
  const row = async (variant: P3ProfileRow['variant'], shapeOf: string, fn: () => Promise<unknown>) => {
    const m = await measureCpu(b, fn);
    const r: P3ProfileRow = { variant, nodes: n, window, wallMs: m.wallMs, cpu: m.cpu };
    r.history = await historyShape(b, shapeOf);
    rows.push(r);
    log(
      `P3 profile ${variant} (${n}): ${sec(r.wallMs)} s; CPU per node: worker ${(r.cpu.workerMs / n).toFixed(0)} ms, server ${(r.cpu.serverMs / n).toFixed(0)} ms`,
    );
  };
  const tag = (v: string) => `p3prof-${v}-${Date.now().toString(36)}`;
  const bareTag = tag('bare');
  await withBundleWorker(b, await bareBundle(), BARE_QUEUE, bareActivities(), P3_TUNING, () =>
    row('bare', `${bareTag}-1`, () => bareWorkflows(b, bareTag, n, window)),
  );
  // Bundled like the product (its preloaded modules), so `load` is what a real run pays for its modules.
  const ablationBundle = await bundleWorkflows(ABLATION_WORKFLOWS_PATH);
  await withBundleWorker(b, ablationBundle, ABLATION_QUEUE, ablationActivities(), P3_TUNING, async () => {
    for (const stage of [...ABLATION_STAGES, 'stepUpserts' as const]) {
      const t = tag(stage);
      await row(stage, `${t}-1`, () =>
        startMany(b, n, window, (k) =>
          b.client.workflow.start('ablationNode', {
            taskQueue: ABLATION_QUEUE,
            workflowId: `${t}-${k}`,
            args: [stage, input],
          }),
        ),
      );
    }
  });
  await withWorker(
    b,
    SIM_QUEUE,
    instantActivities(),
    async () => {
      const t = tag('node');
      await row('provisionNode', provisionWorkflowId(`${t}-1`), () =>
        startMany(b, n, window, (k) =>
          b.client.workflow.start<typeof provisionNode>('provisionNode', {
            taskQueue: SIM_QUEUE,
            workflowId: provisionWorkflowId(`${t}-${k}`),
            args: [
              {
                ...simulatedTemplate(),
                nodeId: `${t}-${k}`,
                nodeDir: `/var/lib/node-bootstrap/${t}-${k}`,
              } as ProvisionInputJson,
            ],
          }),
        ),
      );
      const f = tag('fleet');
      const fleet: FleetInputJson = {
        fleetId: f,
        defaults: simulatedTemplate(),
        nodes: Array.from({ length: n }, (_, k) => ({
          nodeId: `${f}-${k + 1}`,
          nodeDir: `/var/lib/node-bootstrap/${f}-${k + 1}`,
        })),
        window,
      };
      await row('fleet', provisionWorkflowId(`${f}-1`), () => startFleetAndWait(b, fleet, SIM_QUEUE));
    },
    P3_TUNING,
  );
  // The bare runs again, last: how much slower the server has become as the rows above filled it.
  const againTag = tag('bare-again');
  await withBundleWorker(b, await bareBundle(), BARE_QUEUE, bareActivities(), P3_TUNING, () =>
    row('bareAgain', `${againTag}-1`, () => bareWorkflows(b, againTag, n, window)),
  );
  return rows;
}

/** Wall time and CPU (this process: worker + client; the dev server from /proc) while `fn` runs. */
async function measureCpu<T>(
  b: Bench,
  fn: () => Promise<T>,
): Promise<{ value: T; wallMs: number; cpu: { workerMs: number; serverMs: number } }> {
  const cpu0 = process.cpuUsage();
  const server0 = processCpuMs(b.server.pid);
  const t0 = performance.now();
  const value = await fn();
  const wallMs = performance.now() - t0;
  const cpu1 = process.cpuUsage(cpu0);
  return {
    value,
    wallMs,
    cpu: { workerMs: (cpu1.user + cpu1.system) / 1000, serverMs: processCpuMs(b.server.pid) - server0 },
  };
}

async function withBundleWorker<T>(
  b: Pick<Bench, 'native'>,
  workflowBundle: WorkflowBundleWithSourceMap,
  taskQueue: string,
  activities: object,
  tuning: Partial<Parameters<typeof Worker.create>[0]>,
  fn: () => Promise<T>,
): Promise<T> {
  const worker = await Worker.create({ connection: b.native, taskQueue, workflowBundle, activities, ...tuning });
  return worker.runUntil(fn);
}

let bareBundleOnce: Promise<WorkflowBundleWithSourceMap> | undefined;
/** The bare workflow's bundle, built once per bench run (P1's floor, P3's baseline and its profile). */
function bareBundle(): Promise<WorkflowBundleWithSourceMap> {
  bareBundleOnce ??= bundleWorkflowCode({ workflowsPath: BARE_WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
  return bareBundleOnce;
}

/**
 * What one run cost the server, counted from its history: every workflow task
 * is a schedule/start/complete round, every activity a dispatch, every upsert
 * (plus the start and the close) a visibility write.
 */
async function historyShape(b: Bench, workflowId: string): Promise<HistoryShape> {
  return countHistory((await b.client.workflow.getHandle(workflowId).fetchHistory()).events ?? []);
}

function countHistory(events: temporal.api.history.v1.IHistoryEvent[]): HistoryShape {
  const count = (type: string) => events.filter((e) => (e as Record<string, unknown>)[type] != null).length;
  const upserts = count('upsertWorkflowSearchAttributesEventAttributes');
  return {
    events: events.length,
    workflowTasks: count('workflowTaskCompletedEventAttributes'),
    activityTasks: count('activityTaskScheduledEventAttributes'),
    markers: count('markerRecordedEventAttributes'),
    upserts,
    visibilityWrites: upserts + 2,
  };
}

/** The fleet's last run (its only one below nodesPerRun): its history counted, and its timeline (the parent's workflow tasks are serial). */
async function fleetHistoryShape(b: Bench, workflowId: string): Promise<HistoryShape & { timeline: RunTimeline }> {
  const events = (await b.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  return { ...countHistory(events), timeline: runTimeline(events) };
}

/** User + system CPU of a process so far, in ms (/proc/<pid>/stat; clock ticks of 10 ms, Linux's USER_HZ). */
function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** A schema-valid node input for simulated nodes (nothing in it is ever dialled). */
function simulatedTemplate(): Record<string, unknown> {
  return {
    segment: 'sim',
    host: { kind: 'netns', netns: 'sim-node' },
    nodeDir: '/var/lib/node-bootstrap/sim',
    overlay: {
      cidr: '10.200.0.0/16',
      hubs: [
        {
          name: 'hub',
          host: { kind: 'netns', netns: 'sim-hub' },
          interface: 'simhub',
          endpoint: '192.0.2.1:51820',
          overlayIp: '10.200.0.1',
        },
      ],
    },
    spire: {
      trustDomain: 'sim.nodeboot.test',
      serverAddress: '10.200.0.1',
      serverHost: { kind: 'local' },
      serverSocketPath: '/run/spire/sim.sock',
    },
    workloads: [{ name: 'api', spiffePath: '/sim/api', uid: 61001, command: ['/usr/local/bin/sim-api'] }],
  };
}

// --- main -------------------------------------------------------------------------------------

/** The runs grouped by fleet size (in the order first measured), each group summarized by `summary`. */
function bySize<R extends { nodes: number }, S>(runs: R[], summary: (group: R[]) => S): ({ nodes: number } & S)[] {
  return [...new Set(runs.map((r) => r.nodes))].map((nodes) => ({
    nodes,
    ...summary(runs.filter((r) => r.nodes === nodes)),
  }));
}

function versions(): Record<string, string> {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'node_modules/@temporalio/worker/package.json'), 'utf8')) as {
    version: string;
  };
  const pinned = readFileSync(path.join(repoRoot, 'scripts/install-tools.sh'), 'utf8');
  const pin = (name: string) => new RegExp(`${name}=["']?([^"'\\s]+)`).exec(pinned)?.[1] ?? 'unknown';
  return {
    temporalCli: pin('TEMPORAL_CLI_VERSION'),
    spire: pin('SPIRE_VERSION'),
    temporalTsSdk: pkg.version,
    node: process.version,
  };
}

async function main() {
  const startedAt = new Date().toISOString();
  const report: BenchReport = {
    startedAt,
    finishedAt: '',
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(),
      node: process.version,
      load1: os.loadavg()[0] ?? 0,
    },
    versions: versions(),
    ...(process.env.NB_BENCH_DYNAMIC_CONFIG || process.env.NB_BENCH_MEMORY
      ? {
          server: {
            ...(process.env.NB_BENCH_DYNAMIC_CONFIG ? { dynamicConfig: benchDynamicConfig() } : {}),
            ...(process.env.NB_BENCH_MEMORY ? { inMemory: true } : {}),
          },
        }
      : {}),
  };
  const previous =
    opts.update && existsSync(path.join(opts.out, 'report.json'))
      ? (JSON.parse(readFileSync(path.join(opts.out, 'report.json'), 'utf8')) as BenchReport)
      : undefined;
  if (previous) {
    Object.assign(report, { p1: previous.p1, p2: previous.p2, p3: previous.p3 });
    // Which parts this run keeps from the one before it, and when that one ran.
    const kept = (['p1', 'p2', 'p3'] as const).filter((p) => !only.has(p) && previous[p]);
    if (kept.length) report.carriedOver = { parts: kept, from: previous.carriedOver?.from ?? previous.startedAt };
  }
  const b = await setUp();
  try {
    if (only.has('p1')) report.p1 = await p1(b, Number(opts.pairs));
    if (only.has('p2')) {
      const runs = await p2(b, ints(fleetSizes), Number(opts.repeats));
      report.p2 = {
        runs,
        bySize: bySize(runs, (rs) => ({
          wall: summarize(rs.map((r) => r.wallMs)),
          nodesPerMinute: summarize(rs.map((r) => r.nodesPerMinute)),
          peakPerNodeMiB: summarize(rs.map((r) => mb(r.peakPerNodeBytes))),
        })),
      };
      const sweep = ints(opts['sync-sweep']);
      const largest = Math.max(...ints(fleetSizes));
      const syncSweep: P2Run[] = [];
      for (const ms of sweep) syncSweep.push(...(await p2(b, [...new Set([1, largest])], 1, ms)));
      if (syncSweep.length) report.p2.syncSweep = syncSweep;
    }
    if (only.has('p3')) {
      const { runs, bare } = await p3(b, ints(opts.sim), Number(opts.repeats));
      const profile = opts['profile-size'] === '0' ? [] : await p3Profile(b, Number(opts['profile-size']));
      report.p3 = {
        runs,
        bare,
        profile,
        bySize: bySize(runs, (rs) => ({
          wall: summarize(rs.map((r) => r.wallMs)),
          workflowsPerSecond: summarize(rs.map((r) => r.workflowsPerSecond)),
          bareWall: summarize(rs.map((r) => r.bareWallMs!)),
          bareRatio: summarize(rs.map((r) => r.bareRatio)),
        })),
      };
    }
  } finally {
    await b.ledger.close().catch(() => undefined);
    await b.dropDatabase().catch(() => undefined);
    await b.native.close().catch(() => undefined);
    await b.connection.close().catch(() => undefined);
    await b.server.stop();
    rmSync(b.dir, { recursive: true, force: true });
  }
  report.finishedAt = new Date().toISOString();
  mkdirSync(opts.out, { recursive: true });
  writeFileSync(path.join(opts.out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  writeFileSync(path.join(opts.out, 'report.md'), renderReport(report));
  log(`wrote ${path.join(opts.out, 'report.md')} and report.json`);
  console.log(renderReport(report));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
