/**
 * The whole fault matrix (`npm run faults`): every cell of test/faults/matrix.ts
 * on real components, its result checked against the outcome the cell states,
 * and every result written to NODEBOOT_FAULT_RESULTS (default
 * docs/reliability.json; scripts/reliability-report.ts makes docs/reliability.md
 * from it). NODEBOOT_FAULT_CELLS=<id>,<id> runs only those cells (their results
 * go to a temp file unless NODEBOOT_FAULT_RESULTS says where).
 * NODEBOOT_FAULT_ROWS=<row>,<row> runs the cells of those rows, and merges
 * their results into the results file (replacing the same cells): the matrix
 * can run in parts, each short enough to hold the lab lock for.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { MATRIX, cellById } from './matrix.js';
import { faultTimesFromEnv, runMatrix, type CellResult } from './runner.js';
import { stopAllWorkerProcesses } from '../helpers/worker-process.js';

const only = process.env.NODEBOOT_FAULT_CELLS?.split(',').filter(Boolean);
const rows = process.env.NODEBOOT_FAULT_ROWS?.split(',').filter(Boolean);
for (const r of rows ?? []) if (!MATRIX.some((c) => c.row === r)) throw new Error(`NODEBOOT_FAULT_ROWS: no row "${r}"`);
const cells = only?.length ? only.map(cellById) : rows?.length ? MATRIX.filter((c) => rows.includes(c.row)) : MATRIX;
const out =
  process.env.NODEBOOT_FAULT_RESULTS ??
  (only?.length ? path.join(tmpdir(), 'nodeboot-faults.json') : path.resolve('docs/reliability.json'));
/** When some rows ran as a part of their own (NODEBOOT_FAULT_ROWS), and when: the page says so. */
interface RunPart {
  rows: string[];
  startedAt: string;
  finishedAt: string;
}
/** Results of the other rows, kept when only some rows run. */
const earlier: { startedAt: string; results: CellResult[]; parts?: RunPart[] } | null =
  rows?.length && existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) : null;
const times = faultTimesFromEnv();
const concurrency = Number(process.env.NODEBOOT_FAULT_CONCURRENCY ?? 3);

describe('the fault matrix (real components)', () => {
  const results: CellResult[] = [];
  const startedAt = new Date().toISOString();
  const save = () => {
    const kept = (earlier?.results ?? []).filter((r) => !cells.some((c) => c.id === r.id));
    const all = [...kept, ...results];
    const total = rows?.length ? MATRIX.length : cells.length;
    writeFileSync(
      out,
      `${JSON.stringify(
        {
          startedAt: earlier?.startedAt ?? startedAt,
          finishedAt: all.length === total && results.length === cells.length ? new Date().toISOString() : null,
          times,
          concurrency,
          cells: total,
          parts: rows?.length
            ? [...(earlier?.parts ?? []), { rows, startedAt, finishedAt: new Date().toISOString() }]
            : [],
          // In matrix order, whichever part ran them.
          results: MATRIX.flatMap((c) => all.filter((r) => r.id === c.id)),
        },
        null,
        2,
      )}\n`,
    );
  };

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
