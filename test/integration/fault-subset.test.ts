/**
 * The fault matrix's quick subset, in `npm test`: one cell per dependency
 * (Temporal, PostgreSQL, SPIRE server, hub WireGuard, node tunnel, node reboot,
 * worker during compensation, racing workers, disk full), run exactly as
 * `npm run faults` runs every cell (test/faults/runner.ts), each asserted
 * against the outcome test/faults/matrix.ts states for it.
 */
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { SUBSET, cellById } from '../faults/matrix.js';
import { faultTimesFromEnv, runMatrix, type CellResult } from '../faults/runner.js';
import { stopAllWorkerProcesses } from '../helpers/worker-process.js';

const cells = SUBSET.map(cellById);

describe('fault matrix subset (real components)', () => {
  let results: CellResult[] = [];

  beforeAll(async () => {
    try {
      results = await runMatrix(cells, {
        times: faultTimesFromEnv(),
        concurrency: 3,
        shared: { temporalAddress: inject('temporalAddress'), namespace: inject('temporalNamespace') },
      });
    } finally {
      await stopAllWorkerProcesses();
    }
  }, 1_200_000);

  it('covers every dependency', () => {
    expect(new Set(cells.map((c) => c.row)).size).toBe(9);
  });

  for (const c of cells) {
    it(`${c.id}: ${c.fault} -> ${c.expected.outcome}`, () => {
      const r = results.find((x) => x.id === c.id);
      expect(r, `${c.id} did not run`).toBeDefined();
      expect(r!.problems).toEqual([]);
    });
  }
});
