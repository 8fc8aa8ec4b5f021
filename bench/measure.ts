/**
 * Small measuring tools for the benchmark: summary statistics, and the
 * resident memory of the processes living in a set of network namespaces.
 */
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';

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
