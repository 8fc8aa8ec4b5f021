/**
 * The overlay steps (1-3), whichever driver the input names: wireguard/ (we
 * run wireguard-tools on the node and the hubs) or bowtie/ (the Bowtie client
 * and its controller). The workflow calls the same five activities whatever
 * the driver; each picks the driver the input names, so a fleet can mix
 * segments on hand-run WireGuard hubs and on Bowtie.
 */
import type { ProvisionInput } from '../../common/input.js';
import type { OverlayDriver, StepRequest, UndoRequest } from '../types.js';
import { createBowtieSteps, type BowtieDeps } from './bowtie/steps.js';
import { createWireguardSteps } from './wireguard/steps.js';

export function createOverlaySteps(deps: BowtieDeps) {
  const drivers: Record<ProvisionInput['overlay']['driver'], OverlayDriver> = {
    wireguard: createWireguardSteps(deps),
    bowtie: createBowtieSteps(deps),
  };
  const driverOf = (req: StepRequest) => drivers[req.input.overlay.driver];
  return {
    installOverlay: (req: StepRequest) => driverOf(req).installOverlay(req),
    undoInstallOverlay: (req: UndoRequest) => driverOf(req).undoInstallOverlay(req),
    issueOverlayKey: (req: StepRequest) => driverOf(req).issueOverlayKey(req),
    undoIssueOverlayKey: (req: UndoRequest) => driverOf(req).undoIssueOverlayKey(req),
    gatePeerHealth: (req: StepRequest) => driverOf(req).gatePeerHealth(req),
  };
}
