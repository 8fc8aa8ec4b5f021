/**
 * Node paths live in common/ (the input validation checks their lengths);
 * re-exported for the steps. The host and filesystem keys below need the
 * worker's hostname, so they stay on the activity side.
 */
import { hostname } from 'node:os';
import { filesystemOf } from '../common/ids.js';
import type { HostSpec } from '../common/input.js';

export { nodePaths } from '../common/paths.js';

/**
 * Which network stack a host spec names, for the ledger's record of the
 * interfaces we created: the worker's own ("local:<worker>"), one of its
 * network namespaces ("netns:<worker>:<name>"), or a remote login
 * ("ssh:<user>@<host>:<port>").
 */
export function hostKeyOf(spec: HostSpec, worker = hostname()): string {
  switch (spec.kind) {
    case 'local':
      return `local:${worker}`;
    case 'netns':
      return `netns:${worker}:${spec.netns}`;
    case 'ssh':
      return `ssh:${spec.user}@${spec.host}:${spec.port}`;
  }
}

/**
 * Which filesystem a host spec's paths live on, for the ledger's claim on a
 * nodeDir: local and netns nodes share the worker's ("local:<worker>"), whatever
 * their namespace; a remote host has its own, whoever logs in ("ssh:<host>:<port>").
 */
export function fsKeyOf(spec: HostSpec, worker = hostname()): string {
  const fs = filesystemOf(spec); // the same grouping the fleet validation uses
  return fs === 'worker' ? `local:${worker}` : fs;
}
