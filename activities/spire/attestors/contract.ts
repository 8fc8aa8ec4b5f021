/**
 * Node attestors: how a node proves to the SPIRE server who it is, one module
 * per attestor type. Step 4 (steps.ts) is written once against this contract:
 *
 *   checkCredential  the node's credential, read-only, on the node, before the
 *                    agent starts (a certificate for another node or an expired
 *                    one is refused here: the agent never presents it)
 *   prepare          what the agent attests with: its NodeAttestor plugin_data
 *                    (file paths, never key material) and, for join_token only,
 *                    a token minted here and piped to the agent's stdin
 *   agentId          the agent SPIFFE ID the server gives this node: after
 *                    attestation the agent must hold exactly it, else the run
 *                    fails as a security failure
 *   alias            the node alias entry spiffe://<td>/node/<nodeId>, made
 *                    from what the server attested (undefined: the attestor
 *                    makes it itself, as `token generate -spiffeID` does)
 *
 * The undo (stop the agent first, then ban on a security failure or evict,
 * then delete the alias) is the same for every attestor and lives in steps.ts.
 */
import type { NodeAttestor, ProvisionInput } from '../../../common/input.js';
import type { HostTransport } from '../../host/transport.js';
import type { EntrySpec, JoinToken, SpireAgent, SpireServerTarget } from '../server-cli.js';

export type AttestorType = NodeAttestor['type'];
export type AttestorSpec<T extends AttestorType = AttestorType> = Extract<NodeAttestor, { type: T }>;

/** What an attestor's hooks work with. */
export interface AttestorContext<T extends AttestorType = AttestorType> {
  input: ProvisionInput;
  /** `input.spire.nodeAttestor`, narrowed to this attestor. */
  spec: AttestorSpec<T>;
  /** The node: where the credential files are and the agent runs. */
  node: HostTransport;
  server: SpireServerTarget;
  signal?: AbortSignal;
}

/** A plugin_data value as HCL takes it (strings are validated paths or names: nothing needs escaping). */
export type HclValue = string | number | boolean | readonly string[];
export type PluginData = Record<string, HclValue>;

/** The agent's side of one attestation. */
export interface AgentAttestation {
  /** NodeAttestor "<type>" plugin_data in the agent config. File paths, never key material. */
  pluginData: PluginData;
  /** join_token only: consumed by the first attestation, reaches the agent on stdin only. */
  joinToken?: JoinToken;
  /** The agent ID this attestation must produce. Sensitive for join_token (it embeds the token). */
  agentId: string;
}

export interface NodeAttestorModule<T extends AttestorType = AttestorType> {
  readonly type: T;
  /** The server re-attests an evicted agent by itself (`Can re-attest: true`). */
  readonly canReattest: boolean;
  /**
   * The agent ID the server derives for this node, known before attestation
   * (x509pop: agent_path_template on the CN). Undefined when it embeds a secret
   * minted per attestation (join_token).
   */
  agentId(input: ProvisionInput): string | undefined;
  /**
   * Check the node's credential where it lives, read-only. Throws
   * AttestationRejected (another node's, expired, not yet valid, key and
   * certificate do not match) or UnsafePath (key readable by others), so
   * nothing is presented to the server that it should not see.
   */
  checkCredential(ctx: AttestorContext<T>): Promise<void>;
  /** What the agent attests with; called only when no agent of this node runs. */
  prepare(ctx: AttestorContext<T>): Promise<AgentAttestation>;
  /**
   * The node alias entry for an agent the server attested as this node, or
   * undefined when the attestor made it already (join_token). Created
   * idempotently after every attestation (steps.ts).
   */
  alias(ctx: AttestorContext<T>, attested: SpireAgent): EntrySpec | undefined;
}

/** The SPIFFE ID of the SPIRE server: the parent of node (`-node`) entries. */
export const serverSpiffeId = (trustDomain: string) => `spiffe://${trustDomain}/spire/server`;

/** spiffe://<td>/spire/agent/<type>/<nodeId>: the agent ID of a template-based attestor. */
export const templatedAgentId = (input: ProvisionInput, type: string) =>
  `spiffe://${input.spire.trustDomain}/spire/agent/${type}/${input.nodeId}`;
