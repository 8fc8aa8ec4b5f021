/**
 * The benchmark report as Markdown: the numbers, the targets beside them,
 * and where the time goes. Nothing here judges pass/fail beyond "target met".
 */
import type { BenchReport, HistoryShape, P2Run } from './run.js';
import { CPU_CLASSES, mb, sec, type CpuClass } from './measure.js';
import { stepFloors } from './floors.js';

const TARGETS = {
  p1Ratio: 1.05,
  p1StepsMs: 2_500,
  p2Factor: 3,
  p2CpuPerNodeS: 1.0,
  p2FiftyMs: 30_000,
  p3ThousandMs: 60_000,
  p3BareRatio: 1.3,
};

const CLASS_LABEL: Record<CpuClass, string> = {
  worker: 'worker (this process: workflows + activities)',
  devServer: 'Temporal dev server',
  spireServer: 'SPIRE server',
  agents: 'SPIRE agents',
  wireguardGo: 'wireguard-go',
  workloads: 'workloads (the demo program, Go on go-spiffe: it fetches its own SVID over the Workload API)',
  postgres: 'PostgreSQL (ledger backends)',
  tools: "short-lived tools (the worker's reaped children)",
};

export function renderReport(r: BenchReport): string {
  const out: string[] = [];
  const m = r.machine;
  out.push('# node-bootstrap benchmark', '');
  out.push(
    `${r.startedAt} → ${r.finishedAt} · ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, load ${m.load1.toFixed(2)} at start` +
      (r.carriedOver
        ? ` · ${r.carriedOver.parts.map((p) => p.toUpperCase()).join(' and ')} from the run started ${r.carriedOver.from} (\`--update\`)`
        : ''),
  );
  out.push(
    `Temporal CLI ${r.versions.temporalCli} (dev server, ${r.server?.inMemory ? 'in-memory SQLite' : 'SQLite file'}${r.server?.dynamicConfig ? `, dynamic config ${JSON.stringify(r.server.dynamicConfig)}` : ''}), Temporal TS SDK ${r.versions.temporalTsSdk}, SPIRE ${r.versions.spire}. Medians; spread = (max − min) / median.`,
    '',
  );

  if (r.p1) {
    const p = r.p1;
    const met = p.ratio.median <= TARGETS.p1Ratio;
    out.push('## P1 — one node: Temporal vs a plain script', '');
    out.push(
      `Same lab node, same step code and tools; the script validates the input with the same validation, runs the same preflight and calls the six steps in sequence, with no Temporal and no event log (bench/plain-script.ts); both times run from the start (the client's start call, the script's first line) to the result. ${p.pairs.length} pairs, alternating which goes first.`,
      '',
    );
    out.push('| | median | min | max | spread |', '|---|---|---|---|---|');
    out.push(
      `| through Temporal | ${sec(p.temporal.median)} s | ${sec(p.temporal.min)} s | ${sec(p.temporal.max)} s | ${pct(p.temporal.spread)} |`,
    );
    out.push(
      `| plain script | ${sec(p.plain.median)} s | ${sec(p.plain.min)} s | ${sec(p.plain.max)} s | ${pct(p.plain.spread)} |`,
    );
    out.push(
      `| **ratio** (per pair) | **${p.ratio.median.toFixed(3)}×** | ${p.ratio.min.toFixed(3)}× | ${p.ratio.max.toFixed(3)}× | target ≤ ${TARGETS.p1Ratio}× — ${met ? 'met' : 'MISSED'} |`,
      '',
    );
    if (p.bare) {
      const bare = p.bare.wall;
      const t = p.bare.timeline;
      // A run that adds nothing over Temporal's floor: the script's median plus the bare run.
      const floorRatio = (p.plain.median + bare.median) / p.plain.median;
      const bestRatio = (p.plain.median + bare.min) / p.plain.median;
      const over = p.temporal.median - p.plain.median;
      out.push(
        `Temporal's own floor here: the bare workflow (six no-op activities, bench/bare-workflow.ts), started one at a time through the same server on a worker with the same settings, takes ${ms(bare.median)} from its start call to its result (median of ${bare.n}; fastest ${ms(bare.min)}, slowest ${ms(bare.max)}). ` +
          `By its history (server clock, medians): its ${t.workflowTasks} workflow tasks waited ${ms(t.dispatchMs)} in all to be handed to the worker's poll and took ${ms(t.workflowTaskMs)} from there to the server having their answers; the six no-op activities took ${ms(t.activityMs)} from their hand-over to their results recorded; the history spans ${ms(t.historyMs)}, and the rest of the ${ms(bare.median)} is the client's start call and the result reaching it. ` +
          `A run that added nothing to this floor would be ${floorRatio.toFixed(3)}× the script's median (with the fastest bare run, ${bestRatio.toFixed(3)}×), against a target that leaves ${ms(p.plain.median * (TARGETS.p1Ratio - 1))} for all of a run's orchestration. ` +
          `provisionNode's time over the script is ${ms(over)}: ${over <= bare.median ? `within the bare run's median` : `${ms(over - bare.median)} over the bare run's median`}.`,
        '',
      );
      if (p.bareStock) {
        out.push(
          `The same bare runs on a dev server with the server's stock transfer-queue poll rate (history.transferProcessorMaxPollRPS ${p.bareStock.transferPollRps}: the history shard's reader loads new tasks at most ${p.bareStock.transferPollRps} times a second, and the dev server has one shard) take ${ms(p.bareStock.wall.median)} (fastest ${ms(p.bareStock.wall.min)}); their workflow tasks waited ${ms(p.bareStock.timeline.dispatchMs)} in all to be dispatched. ` +
            `The runs above had ${p.bare.transferPollRps} a second (the lab's servers: lab/temporal.ts TRANSFER_POLL_RPS).`,
          '',
        );
      }
    }
    out.push(
      "Where the time goes (median per step; Temporal's step time is from scheduling the activity to its result):",
      '',
    );
    const floors = p.floors ? stepFloors(p.floors) : undefined;
    out.push(
      '| step | what it waits for | Temporal | plain | difference | floor | floor is |',
      '|---|---|---|---|---|---|---|',
    );
    const what: Record<string, string> = {
      installOverlay: 'wireguard-go start, interface up',
      issueOverlayKey: 'key on the node, IPAM, hub peering',
      gatePeerHealth: 'WireGuard handshake + TCP probe through the tunnel',
      startSpireAgent: 'join token, agent attestation over the overlay',
      registerEntries: 'entry create on the server',
      launchWorkloads: 'agent entry sync, SVID issuance and verification',
    };
    for (const s of p.steps) {
      out.push(
        `| ${s.step} | ${what[s.step] ?? ''} | ${ms(s.temporalMedianMs)} | ${ms(s.plainMedianMs)} | ${signedMs(s.temporalMedianMs - s.plainMedianMs)} | ${floors ? `${ms(floors[s.step]!.ms)}` : '—'} | ${floors?.[s.step]?.how ?? ''} |`,
      );
    }
    const stepSum = p.steps.reduce((a, s) => a + s.temporalMedianMs, 0);
    const floorSum = floors ? Object.values(floors).reduce((a, f) => a + f.ms, 0) : NaN;
    out.push(
      `| **six steps** | | **${sec(stepSum)} s** (target ≤ ${sec(TARGETS.p1StepsMs)} s — ${stepSum <= TARGETS.p1StepsMs ? 'met' : 'MISSED'}) | ${sec(p.steps.reduce((a, s) => a + s.plainMedianMs, 0))} s | | ${floors ? ms(floorSum) : '—'} | |`,
    );
    out.push(
      `| orchestration | workflow tasks, activity dispatch, the input's validation, 2 of the 14 ledger events (local activities: the run's start with the preflight, its end) | ${ms(p.orchestrationMedianMs)} | — | ${signedMs(p.orchestrationMedianMs)} | | |`,
      '',
    );
    if (p.floors) {
      const f = p.floors;
      out.push(
        `Floors (bench/floors.ts, medians of ${f.samples} on the same lab node, each primitive on its own): ` +
          `one node command (\`ip netns exec … true\`) ${ms(f.nodeCommandMs)}, wireguard-go start → UAPI socket ${ms(f.wireguardGoStartMs)}, ` +
          `\`wg genkey\` ${ms(f.keyGenMs)}, tunnel RTT ${ms(f.tunnelRttMs)}, one SPIRE server call: admin API ${f.serverApiMs === undefined ? '—' : ms(f.serverApiMs)}, CLI ${ms(f.serverCliMs)}, ` +
          `agent spawn → attested (join token) ${ms(f.agentAttestMs)}, SVID fetch from an agent holding it ${ms(f.svidFetchMs)}, ` +
          `SVID signing (\`spire-server x509 mint\`) ${ms(f.svidMintMs)}, expected entry propagation (server cache refresh / 2 + agent sync / 2) ${ms(f.entryPropagationMs)}.`,
        '',
      );
    }
  }

  if (r.p2) {
    out.push('## P2 — a fleet of lab nodes at once (provisionFleet, window = N)', '');
    out.push(
      "| nodes | wall (median) | spread | nodes/min | peak RSS per node | × one node's time |",
      '|---|---|---|---|---|---|',
    );
    const one = r.p2.bySize.find((s) => s.nodes === 1)?.wall.median;
    for (const s of r.p2.bySize) {
      const factor = one ? s.wall.median / one : NaN;
      const target =
        s.nodes === 50
          ? ` (issue 5's target ≤ ${TARGETS.p2Factor}× — ${factor <= TARGETS.p2Factor ? 'met' : 'MISSED'}; on 2 cores a fleet is CPU-bound: see CPU per node below)`
          : '';
      out.push(
        `| ${s.nodes} | ${sec(s.wall.median)} s | ${pct(s.wall.spread)} | ${s.nodesPerMinute.median.toFixed(1)} | ${s.peakPerNodeMiB.median.toFixed(1)} MiB | ${factor.toFixed(2)}×${target} |`,
      );
    }
    out.push('', 'Peak memory by process (largest run of each size; RSS summed over the node namespaces):', '');
    out.push('| nodes | process | count | RSS | per node |', '|---|---|---|---|---|');
    for (const s of r.p2.bySize) {
      const run = r.p2.runs
        .filter((x) => x.nodes === s.nodes)
        .sort((a, b) => b.peak.totalBytes - a.peak.totalBytes)[0]!;
      for (const [cmd, v] of Object.entries(run.peak.byCommand).sort((a, b) => b[1].bytes - a[1].bytes)) {
        out.push(`| ${s.nodes} | ${cmd} | ${v.processes} | ${mb(v.bytes)} MiB | ${mb(v.bytes / s.nodes)} MiB |`);
      }
    }
    out.push('', "Median step time per node as N grows (from the node runs' receipts):", '');
    const steps = Object.keys(r.p2.runs[0]?.medianStepMs ?? {});
    out.push(`| nodes | ${steps.join(' | ')} |`, `|---|${steps.map(() => '---').join('|')}|`);
    for (const s of r.p2.bySize) {
      const run = r.p2.runs.find((x) => x.nodes === s.nodes)!;
      out.push(
        `| ${s.nodes} | ${steps.map((st) => `${sec(run.medianStepMs[st as keyof typeof run.medianStepMs])} s`).join(' | ')} |`,
      );
    }
    const withCpu = r.p2.bySize
      .map((s) => medianRun(r.p2!.runs.filter((x) => x.nodes === s.nodes && x.cpu)))
      .filter((x) => x !== undefined);
    if (withCpu.length > 0) {
      out.push(
        '',
        `CPU-seconds per node by process class, over the provisioning window (fleet start → result), of the median run of each size by wall time (of two, the slower), read from /proc (bench/measure.ts cpuSampler): ` +
          `long-lived processes by sampling /proc/<pid>/stat utime+stime every second (now minus at the window start; 0 at start for one born inside it); ` +
          `short-lived programs through the process that reaped them (growth of its cutime+cstime: the worker's for its tools, the workloads' for their fetches). ` +
          `"machine" is every core's non-idle time from /proc/stat; "unattributed" is machine minus the classes (other users of this shared machine, kernel threads, anything missed). ` +
          `Target ≤ ${TARGETS.p2CpuPerNodeS.toFixed(1)} CPU-s per node machine-wide.`,
        '',
      );
      out.push(`| class | ${withCpu.map((x) => `${x.nodes} node${x.nodes > 1 ? 's' : ''}`).join(' | ')} |`);
      out.push(`|---|${withCpu.map(() => '---').join('|')}|`);
      const per = (ms: number, n: number) => (ms / n / 1000).toFixed(2);
      for (const c of CPU_CLASSES)
        out.push(`| ${CLASS_LABEL[c]} | ${withCpu.map((x) => per(x.cpu!.byClass[c], x.nodes)).join(' | ')} |`);
      out.push(`| unattributed | ${withCpu.map((x) => per(x.cpu!.unattributedMs, x.nodes)).join(' | ')} |`);
      const bg = (x: (typeof withCpu)[number]) => ((x.cpu!.backgroundMsPerS ?? 0) * x.cpu!.wallMs) / 1000;
      out.push(
        `| … of which the machine's background (unattributed CPU/s measured for 3 s just before, × wall) | ${withCpu.map((x) => (x.cpu!.backgroundMsPerS === undefined ? '—' : per(bg(x), x.nodes))).join(' | ')} |`,
      );
      out.push(
        `| **sum of the classes** (our processes, exact) | ${withCpu
          .map((x) => {
            const v = CPU_CLASSES.reduce((acc, c) => acc + x.cpu!.byClass[c], 0) / x.nodes / 1000;
            return `**${v.toFixed(2)}**${x.nodes === 50 ? ` (target ≤ ${TARGETS.p2CpuPerNodeS} — ${v <= TARGETS.p2CpuPerNodeS ? 'met' : 'MISSED'})` : ''}`;
          })
          .join(' | ')} |`,
      );
      out.push(
        `| **machine-wide** | ${withCpu
          .map((x) => {
            const v = x.cpu!.machineMs / x.nodes / 1000;
            return `**${v.toFixed(2)}**`;
          })
          .join(' | ')} |`,
      );
      out.push(`| wall | ${withCpu.map((x) => `${sec(x.wallMs)} s`).join(' | ')} |`);
      out.push(
        `| processes + threads started per node (machine-wide) | ${withCpu.map((x) => (x.cpu!.forks / x.nodes).toFixed(0)).join(' | ')} |`,
      );
      out.push(
        `| programs the worker started per node | ${withCpu
          .map((x) =>
            Object.values(x.commandsPerNode ?? {})
              .reduce((a, v) => a + v, 0)
              .toFixed(1),
          )
          .join(' | ')} |`,
      );
      const last = withCpu.at(-1)!;
      if (last.commandsPerNode) {
        out.push(
          '',
          `Programs the worker started per node at ${last.nodes} nodes, by program: ` +
            Object.entries(last.commandsPerNode)
              .map(([k, v]) => `${k} ${v.toFixed(1)}`)
              .join(', ') +
            '.',
        );
      }
      const fifty = r.p2.bySize.find((s) => s.nodes === 50);
      const ten = r.p2.bySize.find((s) => s.nodes === 10);
      if (fifty)
        out.push(
          '',
          `50 nodes: ${sec(fifty.wall.median)} s wall (target ≤ ${sec(TARGETS.p2FiftyMs)} s — ${fifty.wall.median <= TARGETS.p2FiftyMs ? 'met' : 'MISSED'})` +
            (ten
              ? `; throughput ${fifty.nodesPerMinute.median.toFixed(1)} nodes/min vs ${ten.nodesPerMinute.median.toFixed(1)} at 10 (target ≥ — ${fifty.nodesPerMinute.median >= ten.nodesPerMinute.median ? 'met' : 'MISSED'}).`
              : '.'),
        );
    }
    if (r.p2.syncSweep?.length) syncSweepSection(out, r.p2.runs, r.p2.syncSweep);
    const failed = [...r.p2.runs, ...(r.p2.syncSweep ?? [])].reduce((n, x) => n + x.failed, 0);
    out.push(
      '',
      failed ? `**${failed} node run(s) failed** across P2 (see report.json).` : 'Every P2 node provisioned.',
      '',
    );
  }

  if (r.p3) {
    const p3 = r.p3;
    // Bracketed: bare run k, real run k, bare run k+1, ... Before bracketing (older reports), each
    // real run after the bare run just before it (the k-th of its size with the k-th).
    const bracketed = p3.bare?.some((x) => x.seq !== undefined) ?? false;
    out.push('## P3 — orchestration alone: simulated nodes (instant activities) through the real dev server', '');
    out.push(
      (bracketed
        ? `Bare baseline: the same number of bench-only workflows (bench/bare-workflow.ts: six no-op activities, nothing else), started by the client the same number at a time as the fleet's window, on the same server and worker settings, just before and just after each real run (bare and real runs alternate, bare first and last); a real run's "bare wall" is the mean of the two around it. The server gets slower as it fills (the bare runs below, in order), so a baseline from before alone would charge that drift to the real run.`
        : `Bare baseline: the same number of bench-only workflows (bench/bare-workflow.ts: six no-op activities, nothing else), started by the client the same number at a time as the fleet's window, on the same server and worker settings, just before each real run.`) +
        ` Each run has a worker of its own, which runs one workflow of its kind (one bare workflow; a fleet of one node) before the measured window: a worker's first workflow task loads its bundle into the sandbox, once per worker.`,
      '',
    );
    out.push(
      '| nodes | window | wall (median) | spread | workflows/s | time per node | bare wall | × bare |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const s of r.p3.bySize) {
      const run = r.p3.runs.find((x) => x.nodes === s.nodes)!;
      const target =
        s.nodes === 1000
          ? ` (target ≤ ${sec(TARGETS.p3ThousandMs)} s — ${s.wall.median <= TARGETS.p3ThousandMs ? 'met' : 'MISSED'})`
          : '';
      const ratio = s.bareRatio
        ? `${s.bareRatio.median.toFixed(2)}× (target ≤ ${TARGETS.p3BareRatio}× — ${s.bareRatio.median <= TARGETS.p3BareRatio ? 'met' : 'MISSED'})`
        : '—';
      out.push(
        `| ${s.nodes} | ${run.window} | ${sec(s.wall.median)} s${target} | ${pct(s.wall.spread)} | ${s.workflowsPerSecond.median.toFixed(1)} | ${(s.wall.median / s.nodes).toFixed(1)} ms | ${s.bareWall ? `${sec(s.bareWall.median)} s` : '—'} | ${ratio} |`,
      );
    }
    out.push(
      '',
      'CPU per node (this process = worker + client; dev server read from /proc), real vs bare, in the order they ran:',
      '',
    );
    out.push(
      '| nodes | run | wall | CPU-s available | worker CPU per node | server CPU per node | machine busy |',
      '|---|---|---|---|---|---|---|',
    );
    const cpuRow = (
      nodes: number,
      what: string,
      x: { wallMs: number; cpu: { workerMs: number; serverMs: number } },
    ) => {
      const avail = (x.wallMs * r.machine.cpus) / 1000;
      const busy = (x.cpu.workerMs + x.cpu.serverMs) / 1000 / avail;
      out.push(
        `| ${nodes} | ${what} | ${sec(x.wallMs)} s | ${avail.toFixed(0)} | ${(x.cpu.workerMs / nodes).toFixed(0)} ms | ${(x.cpu.serverMs / nodes).toFixed(0)} ms | ${pct(busy)} |`,
      );
    };
    // In the order they ran (see `bracketed`).
    const baresFor = (run: (typeof p3.runs)[number]) => {
      const k = p3.runs.filter((x) => x.nodes === run.nodes).indexOf(run);
      const ofSize = p3.bare?.filter((x) => x.nodes === run.nodes) ?? [];
      return bracketed ? [ofSize.find((x) => x.seq === k), ofSize.find((x) => x.seq === k + 1)] : [ofSize[k]];
    };
    const sizes = [...new Set(p3.runs.map((x) => x.nodes))];
    for (const n of sizes) {
      const real = p3.runs.filter((x) => x.nodes === n);
      for (const run of real) {
        const [before, after] = baresFor(run);
        if (before && (!bracketed || run === real[0])) cpuRow(n, bracketed ? 'bare' : 'bare (just before)', before);
        if (run.cpu) cpuRow(n, 'provisionNode (fleet child)', run);
        if (after) cpuRow(n, 'bare', after);
      }
    }
    const bigReal = [...r.p3.runs].sort((x, y) => y.nodes - x.nodes)[0];
    const bigBares = bigReal ? baresFor(bigReal).filter((x) => x !== undefined) : [];
    if (bigReal?.cpu && bigBares.length) {
      // Even with both cores given wholly to the worker and the server, N runs need this long at this CPU per run.
      const floor = (x: { cpu: { workerMs: number; serverMs: number } }) =>
        (x.cpu.workerMs + x.cpu.serverMs) / r.machine.cpus;
      const bareFloor = bigBares.reduce((t, x) => t + floor(x), 0) / bigBares.length;
      out.push(
        '',
        `CPU floor at ${bigReal.nodes} (worker + server CPU of the run ÷ ${r.machine.cpus} cores: the wall time if nothing else ran and both cores were always busy): ` +
          `provisionNode ${sec(floor(bigReal))} s, bare ${sec(bareFloor)} s${bigBares.length > 1 ? ' (the mean of the two around it)' : ''} (target ${sec(TARGETS.p3ThousandMs)} s at 1000).`,
      );
    }
    const realShape = r.p3.runs.find((x) => x.history)?.history;
    const bareShape = r.p3.bare?.find((x) => x.history)?.history;
    if (realShape || bareShape) {
      out.push('', 'One run, counted from its history (what each run asks of the server):', '');
      out.push(
        '| run | events | workflow tasks | activity tasks | markers (local activities, patches) | search-attribute upserts | visibility writes |',
        '|---|---|---|---|---|---|---|',
      );
      const row = (what: string, h: HistoryShape) =>
        out.push(
          `| ${what} | ${h.events} | ${h.workflowTasks} | ${h.activityTasks} | ${h.markers} | ${h.upserts} | ${h.visibilityWrites} |`,
        );
      if (realShape) row('provisionNode (fleet child)', realShape);
      if (bareShape) row('bare', bareShape);
    }
    const parents = r.p3.runs.filter((x) => x.fleetHistory);
    if (parents.length) {
      out.push(
        '',
        "The fleet's own run (the parent: its workflow tasks run one at a time, and a node's start waits for one; its last run when the fleet continued as new):",
        '',
        '| nodes | events | workflow tasks | time in its workflow tasks (started → completed) | waiting for dispatch | the run |',
        '|---|---|---|---|---|---|',
      );
      for (const x of parents) {
        const h = x.fleetHistory!;
        out.push(
          `| ${x.nodes} | ${h.events} | ${h.workflowTasks} | ${sec(h.timeline.workflowTaskMs)} s | ${sec(h.timeline.dispatchMs)} s | ${sec(h.timeline.totalMs)} s |`,
        );
      }
    }
    if (r.p3.profile?.length) {
      const base = r.p3.profile.find((x) => x.variant === 'bare');
      const n = r.p3.profile[0]!.nodes;
      out.push(
        '',
        `Where a run's cost over the bare baseline goes (${n} nodes each, started ${r.p3.profile[0]!.window} at a time, one after the other on the same server): ` +
          "the bare workflow, then bench/ablation-workflow.ts with provisionNode's parts added back one at a time (each row adds its part to the rows above it), " +
          'then provisionNode itself started by the client like the baseline, then the same nodes as one provisionFleet (the P3 run above). ' +
          'CPU per node; "+" is the step from the row above.',
        '',
        '| variant | what it adds | wall | worker CPU | server CPU | worker + server | + from the row above | × bare (CPU) | events | upserts | markers |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
      );
      const WHAT: Record<string, string> = {
        bare: 'six no-op activities (bench/bare-workflow.ts)',
        load: 'our workflow bundle: its modules evaluated per run (zod and the schema cache preloaded once per sandbox)',
        payload: 'the real input to each activity, real-shaped evidence back',
        patch: 'one patch: its marker and the TemporalChangeVersion upsert the SDK adds',
        timer: 'the timer after which a run names its step (timeouts.reportStepAfter)',
        ledger: 'two local activities (the preflight, the ledger write at the end)',
        validate: 'the input parsed by the one validation',
        provisionNode: 'the real workflow (status, saga, receipt, search attributes)',
        fleet: 'the nodes as children of one provisionFleet',
        stepUpserts:
          'for comparison: `validate` plus a BootstrapStep upsert per step, as runs did before LEAN_RUN_2_PATCH (“+” is from `validate`)',
        bareAgain:
          'the bare workflow again, after every row above: the server slows as it fills, and each row carries the drift of the rows run before it (“+” is from `bare`)',
      };
      const perNode = (x: (typeof r.p3.profile)[number]) => (x.cpu.workerMs + x.cpu.serverMs) / x.nodes;
      const baseTotal = base ? perNode(base) : undefined;
      let prev: number | undefined;
      const aside = r.p3.profile.find((x) => x.variant === 'stepUpserts');
      const again = r.p3.profile.find((x) => x.variant === 'bareAgain');
      const last = [aside, again].filter((x) => x !== undefined);
      for (const p of [...r.p3.profile.filter((x) => !last.includes(x)), ...last]) {
        if (p === aside) {
          // The aside row compares with `validate`, the chain's last stage, which it adds its upserts to.
          const validate = r.p3.profile.find((x) => x.variant === 'validate');
          prev = validate ? perNode(validate) : undefined;
        }
        if (p === again) prev = baseTotal; // the drift: the same runs as the first row, measured last
        const w = p.cpu.workerMs / p.nodes;
        const sv = p.cpu.serverMs / p.nodes;
        const total = perNode(p);
        const h = p.history;
        out.push(
          `| ${p.variant} | ${WHAT[p.variant] ?? ''} | ${sec(p.wallMs)} s | ${w.toFixed(0)} ms | ${sv.toFixed(0)} ms | ${total.toFixed(0)} ms | ${prev === undefined ? '—' : `${total - prev >= 0 ? '+' : ''}${(total - prev).toFixed(0)} ms`} | ${baseTotal ? `${(total / baseTotal).toFixed(2)}×` : '—'} | ${h?.events ?? '—'} | ${h?.upserts ?? '—'} | ${h?.markers ?? '—'} |`,
        );
        prev = total;
      }
    }
    const [a, b] = [r.p3.bySize[0], r.p3.bySize.at(-1)];
    if (a && b && a !== b) {
      const growth = b.wall.median / a.wall.median / (b.nodes / a.nodes);
      out.push(
        '',
        `Cost per node at ${b.nodes} vs ${a.nodes}: ${growth.toFixed(2)}× (1.00 = linear${growth > 1.2 ? '; above linear' : ''}).`,
      );
    }
    out.push(
      '',
      'Each simulated node is a full provisionNode run as a fleet child: the six step activities (each writing its own ledger events, to a sink that discards them, as every simulated ledger write is), the preflight and the run’s last ledger write as local activities, its timer and search-attribute upserts (one run finishing well within timeouts.reportStepAfter names no step: the upserts left are the patch’s and, when started by the client, NodeId and Segment), and the workflow tasks between them.',
      '',
    );
  }
  return out.join('\n') + '\n';
}

const ms = (x: number) =>
  Number.isFinite(x) ? (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`) : '—';
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '—');
const signedMs = (x: number) => `${x >= 0 ? '+' : '−'}${ms(Math.abs(x))}`;

/** The median run by wall time (of two, the slower): not the best one. */
function medianRun(runs: P2Run[]): P2Run | undefined {
  return [...runs].sort((a, b) => a.wallMs - b.wallMs)[Math.floor(runs.length / 2)];
}

/**
 * P2's fleets again with the agents syncing less often: a node's step 6 waits
 * for its entries to reach its agent, which happens only at the agent's next
 * sync (SPIRE agents pull; nothing pushes an entry to them), while every agent
 * of the fleet syncs that often for as long as it runs.
 */
function syncSweepSection(out: string[], runs: P2Run[], sweep: P2Run[]): void {
  const largest = Math.max(...sweep.map((x) => x.nodes));
  // The lab's own interval: the median run of each size in the main table.
  const median = (n: number) => medianRun(runs.filter((x) => x.nodes === n));
  const lab = { ms: median(1)?.agentSyncIntervalMs, one: median(1), big: median(largest) };
  const swept = [...new Set(sweep.map((x) => x.agentSyncIntervalMs))].map((ms) => ({
    ms,
    one: sweep.find((x) => x.nodes === 1 && x.agentSyncIntervalMs === ms),
    big: sweep.find((x) => x.nodes === largest && x.agentSyncIntervalMs === ms),
  }));
  const steps = (x: P2Run) => Object.values<number>(x.medianStepMs).reduce((a, v) => a + v, 0);
  const perNode = (x: P2Run) => (x.cpu ? x.cpu.machineMs / x.nodes / 1000 : NaN);
  out.push(
    '',
    `Agent sync interval (spire.agentSyncIntervalMs), the trade-off: a node's step 6 waits for its entries to reach its agent, which they do only at the agent's next sync (SPIRE agents pull entries on a fixed period; nothing makes one sync sooner), and every agent of the fleet syncs that often for as long as it runs. The same fleets, one run each, with the agents syncing less often (npm run bench -- --sync-sweep MS,...; the first row is the lab's interval, the median runs above):`,
    '',
    `| agent sync | 1 node: six steps (target ≤ ${sec(TARGETS.p1StepsMs)} s) | 1 node: launchWorkloads | ${largest} nodes: wall${largest === 50 ? ` (target ≤ ${sec(TARGETS.p2FiftyMs)} s)` : ''} | ${largest} nodes: nodes/min | ${largest} nodes: CPU-s per node, machine-wide (target ≤ ${TARGETS.p2CpuPerNodeS}) | … of which agents, SPIRE server, wireguard-go |`,
    '|---|---|---|---|---|---|---|',
  );
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  for (const { ms, one, big } of [lab, ...swept]) {
    const daemons = big?.cpu
      ? (big.cpu.byClass.agents + big.cpu.byClass.spireServer + big.cpu.byClass.wireguardGo) / big.nodes / 1000
      : NaN;
    out.push(
      `| ${ms === undefined ? '—' : `${sec(ms)} s`} | ${one ? `${sec(steps(one))} s — ${verdict(steps(one) <= TARGETS.p1StepsMs)}` : '—'} | ${one ? `${sec(one.medianStepMs.launchWorkloads)} s` : '—'} | ${big ? `${sec(big.wallMs)} s${largest === 50 ? ` — ${verdict(big.wallMs <= TARGETS.p2FiftyMs)}` : ''}` : '—'} | ${big ? big.nodesPerMinute.toFixed(1) : '—'} | ${big?.cpu ? `${perNode(big).toFixed(2)} — ${verdict(perNode(big) <= TARGETS.p2CpuPerNodeS)}` : '—'} | ${Number.isNaN(daemons) ? '—' : daemons.toFixed(2)} |`,
    );
  }
}
