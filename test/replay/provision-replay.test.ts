// Replays committed histories against today's workflow code: a change that
// would break runs in flight (non-determinism) fails here, before it ships.
// Record new histories with `npx tsx scripts/record-history.ts`; guard changes
// to workflows that have runs in flight with `patched()`.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { workflowBundle } from '../helpers/temporal.js';
import { LEAN_RUN_2_PATCH } from '../../workflows/proxies.js';
import { historyFromJson } from './history-json.js';

const workflowsPath = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
const historiesDir = fileURLToPath(new URL('./histories/', import.meta.url));
const files = readdirSync(historiesDir)
  .filter((f) => f.endsWith('.json'))
  .sort();

describe('workflow replay', () => {
  it('has the recorded histories (success, compensated, held, cancelled, decommission, fleet, key rotation, maintain)', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'provision-success.json',
        'provision-compensated.json',
        'provision-success-local-ledger.json',
        'provision-success-lean.json',
        'provision-compensated-lean.json',
        'provision-success-lean-2.json',
        'provision-compensated-lean-2.json',
        'fleet-three-nodes.json',
        'fleet-three-nodes-child-attributes.json',
        'rotate-success.json',
        'rotate-rolled-back.json',
        'maintain-repair.json',
        'maintain-security-hold.json',
        'maintain-fleet-repair.json',
        'maintain-fleet-dependency-hold.json',
        'maintain-fleet-rotate.json',
      ]),
    );
  });

  it('covers both ledger paths: activities before LEDGER_LOCAL_PATCH, local-activity markers after it', () => {
    const eventTypes = (f: string) =>
      (JSON.parse(readFileSync(`${historiesDir}${f}`, 'utf8')) as { events: { eventType: string }[] }).events.map(
        (e) => e.eventType,
      );
    expect(eventTypes('provision-success.json')).not.toContain('EVENT_TYPE_MARKER_RECORDED');
    expect(
      eventTypes('provision-success-local-ledger.json').filter((t) => t === 'EVENT_TYPE_MARKER_RECORDED').length,
    ).toBeGreaterThan(10);
  });

  it('covers the lean path (LEAN_RUN_PATCH): one patch marker, the preflight and batched ledger events as local activities', () => {
    const events = (f: string) =>
      (
        JSON.parse(readFileSync(`${historiesDir}${f}`, 'utf8')) as {
          events: { eventType: string; markerRecordedEventAttributes?: { markerName: string } }[];
        }
      ).events;
    const markers = (f: string, name: string) =>
      events(f).filter((e) => e.markerRecordedEventAttributes?.markerName === name).length;
    expect(markers('provision-success-lean.json', 'core_patch')).toBe(1);
    // Eight ledger writes and the preflight.
    expect(markers('provision-success-lean.json', 'core_local_activity')).toBe(9);
    expect(markers('provision-success-local-ledger.json', 'core_local_activity')).toBe(14);
  });

  it('covers the second lean path (LEAN_RUN_2_PATCH): one patch marker, local activities for the preflight and the end only', () => {
    const events = (f: string) =>
      (
        JSON.parse(readFileSync(`${historiesDir}${f}`, 'utf8')) as {
          events: { markerRecordedEventAttributes?: { markerName: string; details?: Record<string, unknown> } }[];
        }
      ).events;
    const markers = (f: string, name: string) =>
      events(f).filter((e) => e.markerRecordedEventAttributes?.markerName === name);
    expect(markers('provision-success-lean-2.json', 'core_patch')).toHaveLength(1);
    const patchIds = markers('provision-success-lean-2.json', 'core_patch').map((e) => {
      const data = (e.markerRecordedEventAttributes!.details!['patch-data'] as { payloads: { data: string }[] })
        .payloads[0]!.data;
      return (JSON.parse(Buffer.from(data, 'base64').toString()) as { id: string }).id;
    });
    expect(patchIds).toEqual([LEAN_RUN_2_PATCH]);
    expect(markers('provision-success-lean-2.json', 'core_local_activity')).toHaveLength(2);
  });

  it('replays every recorded history deterministically', async () => {
    const histories = files.map((f) => ({
      workflowId: `replay/${f.replace(/\.json$/, '')}`,
      history: historyFromJson(JSON.parse(readFileSync(`${historiesDir}${f}`, 'utf8'))),
    }));
    const results: { workflowId: string; error?: string }[] = [];
    for await (const r of Worker.runReplayHistories(
      { workflowBundle: await workflowBundle(workflowsPath) },
      histories,
    )) {
      results.push(
        r.error
          ? { workflowId: r.workflowId, error: `${r.error.name}: ${r.error.message}` }
          : { workflowId: r.workflowId },
      );
    }
    expect(results).toEqual(histories.map((h) => ({ workflowId: h.workflowId })));
  });
});
