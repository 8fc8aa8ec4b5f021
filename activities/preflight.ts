/**
 * The preflight: read-only checks that run before step 1, so an input that
 * cannot succeed against this fabric fails before anything on the node changes
 * (and before steps 1-3 are built only to be undone at step 4).
 *
 * Each check reads and never writes. A check that finds the input at odds with
 * the world throws `InvalidInput` naming the input field (non-retryable: the
 * input must change); one that cannot reach what it reads throws its usual
 * transient type and the activity is retried. Later checks (the node attestor
 * plugin the server runs, the Bowtie controller and package) are added to
 * PREFLIGHT_CHECKS; the workflow does not change.
 */
import type { ProvisionInput } from '../common/input.js';
import { parseName, SafePath } from '../common/names.js';
import { ToolError } from './host/exec.js';
import { checkNodeDir } from './host/node-dir.js';
import type { StepDeps } from './deps.js';
import * as server from './spire/server-cli.js';
import type { PreflightEvidence, StepRequest } from './types.js';

/** The preflight only reads the fabric: it needs no ledger. */
export interface PreflightDeps extends Omit<StepDeps, 'ledger'> {
  /** The SPIRE server's config file on the server host (NODEBOOT_SPIRE_SERVER_CONFIG). */
  spireServerConfig?: string;
}

export interface PreflightCheck {
  /** Listed in the evidence ("spire trust domain"). */
  name: string;
  /** Read-only. Returns a secret-free note for the evidence; throws a typed error when the input cannot work. */
  run(input: ProvisionInput, deps: PreflightDeps): Promise<string>;
}

/** The SPIRE server must be the trust domain the input names: otherwise step 4's join token is refused. */
export const spireTrustDomain: PreflightCheck = {
  name: 'spire trust domain',
  async run(input, deps) {
    const srv = {
      transport: deps.transport(input.spire.serverHost),
      socketPath: input.spire.serverSocketPath,
      signal: deps.signal(),
    };
    const td = await server.bundleTrustDomain(srv);
    if (td !== input.spire.trustDomain) {
      throw new ToolError(
        'InvalidInput',
        `spire.trustDomain is "${input.spire.trustDomain}" but the SPIRE server's trust domain is "${td}"`,
        'spire-server',
      );
    }
    return `the SPIRE server's trust domain is "${td}"`;
  },
};

/** Root works in nodeDir: no component of it may be a link, another user's, or writable by others (host/node-dir.ts). */
export const nodeDirSafe: PreflightCheck = {
  name: 'nodeDir safe for root',
  async run(input, deps) {
    const r = await checkNodeDir(deps.transport(input.host), input.nodeDir, { signal: deps.signal() });
    return r.missingFrom
      ? `${r.existing.at(-1) ?? '/'} is root's; ${r.missingFrom} will be created`
      : `${input.nodeDir} is root's`;
  },
};

/**
 * The server must run the NodeAttestor the input's attestor needs, or step 4
 * could only fail after steps 1-3 built the overlay. SPIRE has no API that
 * lists its plugins, so this reads the server's own config file (where the
 * worker is told it is) for its `NodeAttestor "<type>"` blocks. join_token is
 * served by the server's core whether or not a block names it.
 */
export const serverAttestor: PreflightCheck = {
  name: 'server runs the node attestor',
  async run(input, deps) {
    const type = input.spire.nodeAttestor.type;
    if (type === 'join_token') return 'join_token is built into the SPIRE server';
    if (!deps.spireServerConfig)
      return `not checked: the worker does not know the server's config file (NODEBOOT_SPIRE_SERVER_CONFIG)`;
    const configPath = parseName(SafePath, 'NODEBOOT_SPIRE_SERVER_CONFIG', deps.spireServerConfig);
    // Only the plugin names leave the server host: the config holds paths and maybe credentials.
    const r = await deps
      .transport(input.spire.serverHost)
      .run('grep', ['-ohE', 'NodeAttestor[[:space:]]+"[a-z0-9_]+"', '--', configPath], {
        signal: deps.signal(),
        allowNonZeroExit: true,
      });
    if (r.exitCode > 1)
      throw new ToolError(
        'SpireServerUnavailable',
        `cannot read the SPIRE server's config ${configPath} on ${input.spire.serverHost.kind} host`,
        'spire-server',
      );
    const types = [...r.stdout.matchAll(/"([a-z0-9_]+)"/g)].map((m) => m[1]!);
    if (!types.includes(type)) {
      throw new ToolError(
        'InvalidInput',
        `spire.nodeAttestor.type: the SPIRE server does not run the "${type}" NodeAttestor (it runs: ${types.join(', ') || 'none'}); add it to the server's config or choose one of those`,
        'spire-server',
      );
    }
    return `the SPIRE server runs ${types.join(', ')}`;
  },
};

export const PREFLIGHT_CHECKS: readonly PreflightCheck[] = [spireTrustDomain, nodeDirSafe, serverAttestor];

export function createPreflight(deps: PreflightDeps, checks: readonly PreflightCheck[] = PREFLIGHT_CHECKS) {
  /** Run every check in order; the first failure fails the activity. Changes nothing anywhere. */
  async function preflight({ input }: StepRequest): Promise<PreflightEvidence> {
    const passed: PreflightEvidence['checks'] = [];
    for (const check of checks) passed.push({ name: check.name, detail: await check.run(input, deps) });
    return { checks: passed };
  }
  return { preflight };
}
