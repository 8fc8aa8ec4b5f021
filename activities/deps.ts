/**
 * What every step module is built from (createActivities wires the real ones;
 * tests inject their own): the ledger, how to reach a host named in the input,
 * and the running activity's cancellation signal.
 */
import type { ProvisionInput } from '../common/input.js';
import type { HostTransport } from './host/transport.js';
import type { Ledger } from '../inventory/index.js';

export interface StepDeps {
  ledger: Ledger;
  transport(spec: ProvisionInput['host']): HostTransport;
  signal(): AbortSignal | undefined;
}
