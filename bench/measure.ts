/**
 * Small measuring tools for the benchmark: summary statistics, where a run's
 * time went by its history, and the resident memory of the processes living in
 * a set of network namespaces.
 */
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import type { temporal } from '@temporalio/proto';

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  /** (max - min) / median: how far apart the runs were. */
  spread: number;
}

export function summarize(values: number[]): Summary {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN, spread: NaN };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { n: v.length, median, min: v[0]!, max: v.at(-1)!, spread: median ? (v.at(-1)! - v[0]!) / median : 0 };
}

/**
 * Where one run's time went, from its history's timestamps (the server's
 * clock), summed over the run's workflow tasks and activities.
 */
export interface RunTimeline {
  /** The whole history: its first event to its last. */
  totalMs: number;
  /** Each workflow task from scheduled to started: the server handing it to a worker's poll. */
  dispatchMs: number;
  /** Each workflow task from started to completed: the worker running it and its reply reaching the server. */
  workflowTaskMs: number;
  /** Each activity from started to its result recorded (for a no-op: the hand-over to the activity and its reply). */
  activityMs: number;
  workflowTasks: number;
}

export function runTimeline(events: temporal.api.history.v1.IHistoryEvent[]): RunTimeline {
  const at = (e: temporal.api.history.v1.IHistoryEvent) =>
    e.eventTime ? Number(e.eventTime.seconds ?? 0) * 1000 + (e.eventTime.nanos ?? 0) / 1e6 : NaN;
  const byId = new Map(events.map((e) => [Number(e.eventId), e]));
  const since = (id: unknown, e: temporal.api.history.v1.IHistoryEvent) => {
    const from = byId.get(Number(id));
    return from ? at(e) - at(from) : 0;
  };
  const t: RunTimeline = { totalMs: 0, dispatchMs: 0, workflowTaskMs: 0, activityMs: 0, workflowTasks: 0 };
  for (const e of events) {
    if (e.workflowTaskStartedEventAttributes)
      t.dispatchMs += since(e.workflowTaskStartedEventAttributes.scheduledEventId, e);
    if (e.workflowTaskCompletedEventAttributes) {
      t.workflowTaskMs += since(e.workflowTaskCompletedEventAttributes.startedEventId, e);
      t.workflowTasks++;
    }
    const done = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes;
    if (done) t.activityMs += since(done.startedEventId, e);
  }
  if (events.length) t.totalMs = at(events.at(-1)!) - at(events[0]!);
  return t;
}

export interface MemorySample {
  /** Sum of VmRSS over every process in the namespaces, bytes. */
  totalBytes: number;
  /** By command name (wireguard-go, spire-agent, node, ...). */
  byCommand: Record<string, { processes: number; bytes: number }>;
}

/**
 * RSS of every process whose network namespace is one of `netnsNames`: the
 * namespaces' inodes (from /run/netns) against each /proc/<pid>/ns/net link.
 * Reads /proc only, so sampling it often costs next to nothing.
 */
export function sampleNamespaceMemory(netnsNames: string[]): MemorySample {
  const inodes = new Set<string>();
  for (const ns of netnsNames) {
    try {
      inodes.add(`net:[${statSync(`/run/netns/${ns}`).ino}]`);
    } catch {
      // namespace gone
    }
  }
  const sample: MemorySample = { totalBytes: 0, byCommand: {} };
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!inodes.has(readlinkSync(`/proc/${entry}/ns/net`))) continue;
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      const name = /^Name:\s+(.+)$/m.exec(status)?.[1]?.trim() ?? '?';
      // `ip netns exec` parents and sleeping shells are not the node's software.
      if (rssKb === 0) continue;
      const slot = (sample.byCommand[name] ??= { processes: 0, bytes: 0 });
      slot.processes += 1;
      slot.bytes += rssKb * 1024;
      sample.totalBytes += rssKb * 1024;
    } catch {
      // the process ended between readdir and read
    }
  }
  return sample;
}

/** Sample every `intervalMs` until stopped; keeps the sample with the largest total. */
export function peakSampler(netnsNames: string[], intervalMs = 1_000): { stop(): MemorySample } {
  let peak: MemorySample = { totalBytes: 0, byCommand: {} };
  const take = () => {
    const s = sampleNamespaceMemory(netnsNames);
    if (s.totalBytes > peak.totalBytes) peak = s;
  };
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return peak;
    },
  };
}

export const mb = (bytes: number) => Math.round((bytes / (1024 * 1024)) * 10) / 10;
export const sec = (ms: number) => Math.round(ms / 100) / 10;

// --- CPU by process class, from /proc ------------------------------------------------------

/** Linux's USER_HZ: /proc reports CPU time in ticks of 10 ms. */
const TICK_MS = 10;

export const CPU_CLASSES = [
  'worker',
  'devServer',
  'spireServer',
  'agents',
  'wireguardGo',
  'workloads',
  'postgres',
  'tools',
] as const;
export type CpuClass = (typeof CPU_CLASSES)[number];

export interface CpuSample {
  wallMs: number;
  /** Every core's non-idle time (/proc/stat: user+nice+system+irq+softirq+steal), ms. */
  machineMs: number;
  /** CPU ms by class (see `cpuSampler`). */
  byClass: Record<CpuClass, number>;
  /** machineMs minus every class: what no class accounts for (other users of the machine, missed processes). */
  unattributedMs: number;
  /** Processes and threads the machine started in the window (/proc/stat `processes`: every fork and clone, machine-wide). */
  forks: number;
  /**
   * Unattributed CPU per second of wall time measured just before the window, with
   * nothing provisioning: the machine's background (other users, kernel threads).
   */
  backgroundMsPerS?: number;
}

interface ProcStat {
  comm: string;
  ppid: number;
  own: number;
  children: number;
  start: number;
}

function readStat(pid: string): ProcStat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const comm = s.slice(s.indexOf('(') + 1, close);
    const f = s.slice(close + 2).split(' ');
    return {
      comm,
      ppid: Number(f[1]),
      own: Number(f[11]) + Number(f[12]),
      children: Number(f[13]) + Number(f[14]),
      start: Number(f[19]),
    };
  } catch {
    return undefined;
  }
}

function machineStat(): { busyTicks: number; forks: number } {
  const text = readFileSync('/proc/stat', 'utf8');
  const cpu = /^cpu\s+(.+)$/m.exec(text)![1]!.split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal (guest is already inside user)
  const busyTicks = cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + (cpu[7] ?? 0);
  return { busyTicks, forks: Number(/^processes\s+(\d+)/m.exec(text)![1]) };
}

const uptimeTicks = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * (1000 / TICK_MS);

/**
 * How a long-lived process is counted: `own` = its utime+stime; `withChildren`
 * = also the cutime+cstime of children it has reaped (the short-lived programs
 * it ran). `undefined`: not tracked on its own (a short-lived program, counted
 * in its parent's children time, or not ours).
 */
export type Classifier = (
  pid: number,
  comm: string,
  cmdline: string[],
) => { cls: CpuClass; children?: CpuClass } | undefined;

/**
 * CPU time by process class over a window, read from /proc only.
 *
 * Long-lived processes (`classify` names them) are sampled every `intervalMs`:
 * /proc/<pid>/stat utime+stime now minus at the window's start (0 for a process
 * born inside it), its last sample for one that ended. Short-lived programs
 * cannot be sampled reliably: each is counted through the process that ran and
 * reaped it (its cutime+cstime grows by the child's whole CPU time, and that of
 * the child's reaped descendants, when the child is waited for), which the
 * classifier names with `children` (the worker's tools; the workloads' own
 * children, if any: the demo workload speaks the Workload API itself). Daemons
 * the worker started and that still run are not in its children time (they are
 * not reaped), so nothing is counted twice.
 */
export function cpuSampler(classify: Classifier, intervalMs = 1_000): { stop(): CpuSample } {
  return startCpuSampler(classify, intervalMs);
}

/** The machine's unattributed CPU per second over `ms` of idle time (see CpuSample.backgroundMsPerS). */
export async function backgroundCpu(classify: Classifier, ms = 3_000): Promise<number> {
  const s = startCpuSampler(classify, 1_000);
  await new Promise((r) => setTimeout(r, ms));
  const r = s.stop();
  return r.unattributedMs / (r.wallMs / 1000);
}

function startCpuSampler(classify: Classifier, intervalMs: number): { stop(): CpuSample } {
  const t0 = performance.now();
  const m0 = machineStat();
  const windowStart = uptimeTicks();
  const tracked = new Map<
    string,
    { cls: CpuClass; childCls?: CpuClass; base: number; baseChildren: number; own: number; children: number }
  >();
  const ignored = new Set<string>();
  const take = () => {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const st = readStat(entry);
      if (!st) continue;
      const key = `${entry}:${st.start}`;
      if (ignored.has(key)) continue;
      let t = tracked.get(key);
      if (!t) {
        let cmdline: string[] = [];
        try {
          cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
        } catch {
          continue;
        }
        const c = classify(Number(entry), st.comm, cmdline);
        if (!c) {
          ignored.add(key);
          continue;
        }
        const bornInside = st.start >= windowStart - 1;
        t = {
          cls: c.cls,
          childCls: c.children,
          base: bornInside ? 0 : st.own,
          baseChildren: bornInside ? 0 : st.children,
          own: st.own,
          children: st.children,
        };
        tracked.set(key, t);
      }
      t.own = st.own;
      t.children = st.children;
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      const m1 = machineStat();
      const byClass = Object.fromEntries(CPU_CLASSES.map((c) => [c, 0])) as Record<CpuClass, number>;
      for (const t of tracked.values()) {
        byClass[t.cls] += (t.own - t.base) * TICK_MS;
        if (t.childCls) byClass[t.childCls] += (t.children - t.baseChildren) * TICK_MS;
      }
      const machineMs = (m1.busyTicks - m0.busyTicks) * TICK_MS;
      const sum = CPU_CLASSES.reduce((s, c) => s + byClass[c], 0);
      return {
        wallMs: performance.now() - t0,
        machineMs,
        byClass,
        unattributedMs: machineMs - sum,
        forks: m1.forks - m0.forks,
      };
    },
  };
}
