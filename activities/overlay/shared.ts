/**
 * What both overlay drivers (wireguard/, bowtie/) do the same way: claim the
 * node's directory before changing anything, and fingerprint a public key for
 * the evidence a person compares.
 */
import { createHash } from 'node:crypto';
import type { ProvisionInput } from '../../common/input.js';
import type { Ledger } from '../../inventory/index.js';
import { fsKeyOf } from '../paths.js';

/** sha256 of the public key, hex, first 16 chars. */
export function fingerprint(publicKey: string): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16);
}

/**
 * Claim the node's nodeDir in the ledger (the first thing a run changes), so a
 * second live node naming the same directory on the same filesystem fails here,
 * non-retryably, before it can take over the first node's agent or workloads.
 */
export async function claimNodeDir(ledger: Ledger, input: ProvisionInput): Promise<void> {
  await ledger.claimNodeDir(input.nodeId, fsKeyOf(input.host), input.nodeDir);
}
