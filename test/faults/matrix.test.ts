/**
 * The whole fault matrix (`npm run faults`): every cell of test/faults/matrix.ts
 * on real components, its result checked against the outcome the cell states,
 * and every result written to NODEBOOT_FAULT_RESULTS (default
 * docs/reliability.json; scripts/reliability-report.ts makes docs/reliability.md
 * from it). NODEBOOT_FAULT_CELLS=<id>,<id> runs only those cells (their results
 * go to a temp file unless NODEBOOT_FAULT_RESULTS says where).
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { MATRIX, cellById } from './matrix.js';
import { faultTimesFromEnv, runMatrix, type CellResult } from './runner.js';
import { stopAllWorkerProcesses } from '../helpers/worker-process.js';

const only = process.env.NODEBOOT_FAULT_CELLS?.split(',').filter(Boolean);
const cells = only?.length ? only.map(cellById) : MATRIX;
const out =
  process.env.NODEBOOT_FAULT_RESULTS ??
  (only?.length ? path.join(tmpdir(), 'nodeboot-faults.json') : path.resolve('docs/reliability.json'));
const times = faultTimesFromEnv();
const concurrency = Number(process.env.NODEBOOT_FAULT_CONCURRENCY ?? 3);

describe('the fault matrix (real components)', () => {
  const results: CellResult[] = [];
  const startedAt = new Date().toISOString();
  const save = () =>
    writeFileSync(
      out,
      `${JSON.stringify(
        {
          startedAt,
          finishedAt: results.length === cells.length ? new Date().toISOString() : null,
          times,
          concurrency,
          cells: cells.length,
          results,
        },
        null,
        2,
      )}\n`,
    );

  beforeAll(async () => {
    try {
      await runMatrix(cells, {
        times,
        concurrency,
        shared: { temporalAddress: inject('temporalAddress'), namespace: inject('temporalNamespace') },
        onResult: (r) => {
          results.push(r);
          save();
        },
      });
    } finally {
      await stopAllWorkerProcesses();
    }
    save();
    console.log(`[faults] results: ${out}`);
  });

  for (const c of cells) {
    it(`${c.id}: ${c.fault} -> ${c.expected.outcome}`, () => {
      const r = results.find((x) => x.id === c.id);
      expect(r, `${c.id} did not run`).toBeDefined();
      expect(r!.problems).toEqual([]);
    });
  }
});
