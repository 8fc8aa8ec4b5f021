/**
 * checkNode: one read-only look at every link of a provisioned node, from its
 * interface to its workloads' SVIDs (common/health.ts says what a link is).
 * It changes nothing on the node, the hubs, the SPIRE server or the ledger, so
 * it is safe to run at any time, as often as wanted.
 */
import { worstOf, type HealthReport } from '../../common/health.js';
import type { CheckRequest } from '../types.js';
import { bowtieLinks, wireguardLinks, type CheckDeps } from './overlay.js';
import { spireLinks } from './spire.js';

export function createHealthActivities(deps: CheckDeps) {
  async function checkNode({ input, thresholds }: CheckRequest): Promise<HealthReport> {
    const started = Date.now();
    const overlay =
      input.overlay.driver === 'bowtie'
        ? await bowtieLinks(deps, input, thresholds)
        : await wireguardLinks(deps, input, thresholds);
    const links = [...overlay, ...(await spireLinks(deps, input, thresholds))];
    return {
      nodeId: input.nodeId,
      driver: input.overlay.driver,
      checkedAt: new Date(started).toISOString(),
      status: worstOf(links.map((l) => l.status)),
      links,
      durationMs: Date.now() - started,
    };
  }
  return { checkNode };
}
