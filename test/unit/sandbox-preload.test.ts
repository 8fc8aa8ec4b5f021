/**
 * The workflow bundle's preload (workers/bundle.ts WORKFLOW_PRELOAD_MODULES)
 * really loads zod, so every run in a sandbox shares it. A preload of 'zod' by
 * name was compiled to nothing (zod's package declares no side effects), and
 * each run evaluated zod afresh; this test failed on that bundle.
 *
 * The bundle is run the way the SDK's reusable sandbox runs it: module loads go
 * through `globalThis.__webpack_module_cache__`, and `preloadModules()` runs
 * before any workflow.
 */
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { bundleWorkflows } from '../../workers/bundle.js';

describe('workflow sandbox preload', () => {
  it('loads zod (and the schema cache) once, before any workflow', async () => {
    const bundle = await bundleWorkflows();
    const loaded: string[] = [];
    const context = vm.createContext({});
    Object.defineProperty(context, '__webpack_module_cache__', {
      value: new Proxy({} as Record<string, unknown>, {
        set: (cache, id, module) => {
          loaded.push(String(id));
          cache[String(id)] = module;
          return true;
        },
      }),
    });
    vm.runInContext(bundle.code, context);
    const before = loaded.length;
    vm.runInContext('__TEMPORAL__.preloadModules()', context);
    const preloaded = loaded.slice(before);
    expect(preloaded.some((id) => /node_modules\/zod\/v4\/classic\/schemas\.js$/.test(id))).toBe(true);
    expect(preloaded.some((id) => id.endsWith('common/schema-cache.ts'))).toBe(true);
    // Nothing of ours that keeps per-run state: no workflow module is shared.
    expect(preloaded.filter((id) => id.includes('/workflows/'))).toEqual([]);
  }, 60_000);
});
