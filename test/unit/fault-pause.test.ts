/**
 * NODEBOOT_FAULT_PAUSE (workers/fault-injection.ts), as the worker reads it:
 * one or more "<activity>:<ms>[:before]" pauses, comma-separated; anything
 * else refuses the worker's start, naming the field and the pause.
 */
import { describe, expect, it } from 'vitest';
import { loadWorkerConfig } from '../../workers/config.js';

const pauses = (v: string) => loadWorkerConfig({ NODEBOOT_FAULT_PAUSE: v }).NODEBOOT_FAULT_PAUSE;

describe('NODEBOOT_FAULT_PAUSE', () => {
  it('is off unless set', () => {
    expect(loadWorkerConfig({}).NODEBOOT_FAULT_PAUSE).toBeUndefined();
  });

  it('reads one pause, after the work by default or before it', () => {
    expect(pauses('registerEntries:1500')).toEqual([{ activity: 'registerEntries', ms: 1500, when: 'after' }]);
    expect(pauses('registerEntries:1500:before')).toEqual([{ activity: 'registerEntries', ms: 1500, when: 'before' }]);
  });

  it('reads several, in order', () => {
    expect(pauses('launchWorkloads:60000:before,undoRegisterEntries:30000')).toEqual([
      { activity: 'launchWorkloads', ms: 60000, when: 'before' },
      { activity: 'undoRegisterEntries', ms: 30000, when: 'after' },
    ]);
  });

  it('refuses a malformed pause, naming the field and which pause', () => {
    expect(() => pauses('registerEntries:1500:during')).toThrow(/NODEBOOT_FAULT_PAUSE\.0: must be "<activity>:<ms>"/);
    expect(() => pauses('registerEntries')).toThrow(/NODEBOOT_FAULT_PAUSE\.0: must be "<activity>:<ms>"/);
    expect(() => pauses('dropTables:10')).toThrow(/NODEBOOT_FAULT_PAUSE\.0\.activity: must name one of/);
    expect(() => pauses('launchWorkloads:0')).toThrow(/NODEBOOT_FAULT_PAUSE\.0\.ms/);
    expect(() => pauses('launchWorkloads:10,')).toThrow(/NODEBOOT_FAULT_PAUSE\.1: must be "<activity>:<ms>"/);
  });
});
