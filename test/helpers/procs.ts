/** Reading a process from /proc in tests: '' / [] once it is gone. */
import { readFileSync } from 'node:fs';

export function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** A SPIRE agent daemon (`spire-agent run`), not a workload's `spire-agent api fetch` child. */
export const isAgentDaemon = (pid: number) => commOf(pid) === 'spire-agent' && argvOf(pid)[1] === 'run';
