/**
 * Human output: a run's status block, one-line step evidence, and the live
 * progress printer behind `watch` and `--wait` (a redrawn block on a TTY,
 * plain lines otherwise, one JSON object per change with --json).
 */
import { STEP_TITLES, type StepName } from '../../common/steps.js';
import type { StepEvidence, StepStatus } from '../../common/definitions.js';
import { stepsOf, type RunView } from './runs.js';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Raw writes (no newline) for the TTY redraw. */
  write(stream: 'out' | 'err', text: string): void;
  isTTY(stream: 'out' | 'err'): boolean;
  /** Terminal width (0 when unknown). */
  columns(stream: 'out' | 'err'): number;
}

const MARK: Record<StepStatus['state'], string> = {
  pending: '  -  ',
  running: ' ... ',
  succeeded: ' ok  ',
  failed: 'FAIL ',
  cancelled: 'CNCL ',
  compensating: 'undo…',
  compensated: 'undone',
  compensation_failed: 'UNDO!',
};

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const secs = (ms: number | undefined) => (ms === undefined ? '' : `${(ms / 1000).toFixed(1)}s`);

/** What a step proved, in one line. */
export function evidenceLine(step: StepName, evidence: unknown): string {
  if (!evidence || typeof evidence !== 'object') return '';
  switch (step) {
    case 'installOverlay': {
      const e = evidence as StepEvidence['installOverlay'];
      if (!e.interface) return `${e.toolVersion} ${e.alreadyPresent ? 'already installed' : 'installed'}`; // bowtie: the client's package
      return `interface ${e.interface}${e.alreadyPresent ? ' (already there)' : ''}, ${e.toolVersion}`;
    }
    case 'issueOverlayKey': {
      const e = evidence as StepEvidence['issueOverlayKey'];
      const device = e.deviceId ? `device ${e.deviceId}, ` : '';
      return `overlay ${e.overlayIp}, ${device}key ${e.keyFingerprint}, peered with ${e.hubs.map((h) => h.name).join(', ')}`;
    }
    case 'gatePeerHealth': {
      const e = evidence as StepEvidence['gatePeerHealth'];
      const seen = e.device ? [`device ${e.device.state}, seen ${e.device.lastSeenAgeSeconds}s ago`] : [];
      return `${[...seen, ...e.hubs.map((h) => `${h.name} handshake ${h.handshakeAgeSeconds}s ago`)].join(', ')}; probe ${e.probe.target} ${e.probe.connectMs} ms`;
    }
    case 'startSpireAgent': {
      const e = evidence as StepEvidence['startSpireAgent'];
      const reattest = e.canReattest === undefined ? '' : `, ${e.canReattest ? 'can' : 'cannot'} re-attest`;
      return `${e.nodeAliasId} (${e.attestationType}${reattest}), agent pid ${e.agentPid}`;
    }
    case 'registerEntries': {
      const e = evidence as StepEvidence['registerEntries'];
      const created = e.entries.filter((x) => x.created).length;
      return `${e.entries.length} entr${e.entries.length === 1 ? 'y' : 'ies'} (${created} new)`;
    }
    case 'launchWorkloads': {
      const e = evidence as StepEvidence['launchWorkloads'];
      return (
        e.workloads.map((w) => `${w.name} svid ${w.svidSerial} until ${w.svidNotAfter}`).join('; ') || 'no workloads'
      );
    }
  }
}

export function stepLine(s: StepStatus): string {
  let detail = '';
  if (s.failure) detail = `${s.failure.type}: ${s.failure.message}`;
  else if (s.evidence) detail = evidenceLine(s.step, s.evidence);
  if (s.undo) {
    const undo = s.undo.error
      ? `undo failed (${s.undo.error.type}): ${s.undo.error.message}`
      : `undone (${s.undo.reason})${s.undo.removed?.length ? `: ${s.undo.removed.join(', ')}` : ''}`;
    detail = detail ? `${detail}; ${undo}` : undo;
  }
  const runs = s.runs > 1 ? ` x${s.runs}` : '';
  return `  ${MARK[s.state]} ${pad(STEP_TITLES[s.step], 24)} ${pad(s.state + runs, 14)} ${pad(secs(s.durationMs), 6)} ${detail}`.trimEnd();
}

export function headline(v: RunView): string {
  const where =
    v.outcome === 'held' && v.heldStep
      ? ` at ${STEP_TITLES[v.heldStep]}`
      : v.currentStep && v.execution === 'RUNNING'
        ? ` (${STEP_TITLES[v.currentStep]})`
        : '';
  return `${v.outcome}${where}`;
}

/** The full `status` block. */
export function renderStatus(v: RunView): string[] {
  const lines = [
    `node ${v.nodeId}${v.searchAttributes.segment ? ` (segment ${v.searchAttributes.segment})` : ''}   ${v.workflowId}   run ${v.runId}`,
    `state: ${headline(v)}   [${v.execution}${v.closeTime ? ` ${v.closeTime}` : ` since ${v.startTime}`}]`,
  ];
  if (v.source === 'describe') {
    lines.push(
      `  (no worker answered the status query on task queue ${v.taskQueue}: step detail unavailable, state from Temporal's record)`,
    );
  } else lines.push(...stepsOf(v).map(stepLine));
  if (v.lastFailure && v.outcome === 'provisioned') {
    lines.push(
      `earlier failure (retried since): ${v.lastFailure.step} ${v.lastFailure.type}: ${v.lastFailure.message}`,
    );
  } else if (v.lastFailure) {
    lines.push(
      `last failure: ${v.lastFailure.step} ${v.lastFailure.type} (${v.lastFailure.errorClass}): ${v.lastFailure.message}`,
    );
    lines.push(`hint: ${v.lastFailure.suggestion}`);
  }
  if (v.decommission) {
    const d = v.decommission;
    lines.push(
      `${v.outcome} after this run: ${d.workflowId} run ${d.runId} ${d.status.toLowerCase()}${d.closeTime ? ` at ${d.closeTime}` : ` since ${d.startTime}`}`,
    );
  }
  if (v.receipt)
    lines.push(
      `${v.decommission ? 'was provisioned (before the decommission)' : 'provisioned'}: overlay ${v.receipt.overlayIp}, key ${v.receipt.keyFingerprint}, ${v.receipt.nodeAliasId} (${v.receipt.attestationType}, canReattest ${v.receipt.canReattest ?? false}), ${v.receipt.workloads.length} workload(s)`,
    );
  if (v.next.length) lines.push(`next: ${v.next.join('  |  ')}`);
  return lines;
}

/** One change the progress printer reports (also the --json line shape of `watch`). */
export interface ProgressEvent {
  at: string;
  nodeId: string;
  runId: string;
  step: StepName | 'run';
  state: string;
  detail?: string;
}

/** The events between two views of a run (all of them for the first view). */
export function progressEvents(view: RunView, previous: RunView | undefined): ProgressEvent[] {
  const at = new Date().toISOString();
  const base = { at, nodeId: view.nodeId, runId: view.runId };
  const events: ProgressEvent[] = [];
  const sameRun = previous?.runId === view.runId;
  if (!sameRun)
    events.push({ ...base, step: 'run', state: 'following', detail: `${view.workflowId} run ${view.runId}` });
  for (const s of view.steps) {
    const before = sameRun ? previous?.steps.find((p) => p.step === s.step) : undefined;
    if (before && before.state === s.state && before.runs === s.runs) continue;
    if (!before && s.state === 'pending') continue;
    const detail = s.failure
      ? `${s.failure.type}: ${s.failure.message}`
      : s.evidence && s.state === 'succeeded'
        ? evidenceLine(s.step, s.evidence)
        : undefined;
    events.push({
      ...base,
      step: s.step,
      state: s.state + (s.runs > 1 ? ` (run ${s.runs})` : ''),
      ...(detail ? { detail } : {}),
    });
  }
  if (view.steps.length === 0 && view.currentStep && (!sameRun || previous?.currentStep !== view.currentStep)) {
    events.push({
      ...base,
      step: view.currentStep,
      state: 'running',
      detail: 'from search attributes (no worker answered the query)',
    });
  }
  if (!sameRun || previous?.outcome !== view.outcome) {
    const detail =
      view.lastFailure && view.outcome !== 'running' && view.outcome !== 'provisioned'
        ? `${view.lastFailure.type} at ${view.lastFailure.step}: ${view.lastFailure.suggestion}`
        : undefined;
    events.push({ ...base, step: 'run', state: view.outcome, ...(detail ? { detail } : {}) });
  }
  return events;
}

export function eventLine(e: ProgressEvent): string {
  const time = e.at.slice(11, 19);
  const what = e.step === 'run' ? 'run' : STEP_TITLES[e.step];
  return `${time} ${e.nodeId}  ${pad(what, 24)} ${pad(e.state, 11)}${e.detail ? ` ${e.detail}` : ''}`.trimEnd();
}

/**
 * Prints progress while a run is followed: on a TTY the status block is
 * redrawn in place; otherwise (CI logs, pipes) one plain line per change;
 * with `json`, one JSON object per change.
 */
export class ProgressPrinter {
  private drawn = 0;

  constructor(
    private readonly io: Io,
    private readonly stream: 'out' | 'err',
    private readonly mode: { json: boolean },
  ) {}

  update(view: RunView, previous: RunView | undefined): void {
    const line = (s: string) => (this.stream === 'out' ? this.io.out(s) : this.io.err(s));
    if (this.mode.json) {
      for (const e of progressEvents(view, previous)) line(JSON.stringify(e));
      return;
    }
    if (this.io.isTTY(this.stream)) {
      // Lines cut to the terminal width, so the block's height is its line count.
      const cols = this.io.columns(this.stream);
      const block = renderStatus(view).map((l) => (cols > 1 && l.length >= cols ? l.slice(0, cols - 2) + '…' : l));
      // Move up over the previous block and clear it, then draw the new one.
      if (this.drawn) this.io.write(this.stream, `\x1b[${this.drawn}A\x1b[0J`);
      this.io.write(this.stream, block.join('\n') + '\n');
      this.drawn = block.length;
      return;
    }
    for (const e of progressEvents(view, previous)) line(eventLine(e));
  }
}
