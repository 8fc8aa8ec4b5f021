/**
 * The attestor registry: which node attestors step 4 drives (the contract is
 * in contract.ts, see there).
 */
import type { AttestorType, NodeAttestorModule } from './contract.js';
import { joinTokenAttestor } from './join-token.js';
import { sshpopAttestor } from './sshpop.js';
import { tpmDevidAttestor } from './tpm-devid.js';
import { x509popAttestor } from './x509pop.js';

export * from './contract.js';

/**
 * Attestors step 4 drives. sshpop and tpm_devid register here (one import, one
 * line each); common/validate.ts DRIVABLE_ATTESTORS lists the same types, so an
 * input naming another is refused before step 1.
 */
const ATTESTORS: { [T in AttestorType]?: NodeAttestorModule<T> } = {
  join_token: joinTokenAttestor,
  x509pop: x509popAttestor,
  sshpop: sshpopAttestor,
  tpm_devid: tpmDevidAttestor,
};

/** The module for `type`; undefined when this worker does not drive it. */
export function attestorOf<T extends AttestorType>(type: T): NodeAttestorModule<T> | undefined {
  return ATTESTORS[type] as NodeAttestorModule<T> | undefined;
}
