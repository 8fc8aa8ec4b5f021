/**
 * One copy of each zod schema per process (or per workflow sandbox), built on
 * first use.
 *
 * Why: the Temporal workflow sandbox evaluates every workflow module afresh for
 * each run, and our input schemas are module constants, so each run used to
 * rebuild all of them (about 15 ms of worker CPU per run, measured in
 * `npm run bench` P3). The worker preloads this module and zod itself
 * (common/sandbox-preload.ts, listed in workers/bundle.ts
 * `WORKFLOW_PRELOAD_MODULES`): preloaded modules are shared by every run in a
 * sandbox, so a schema built here by one run is reused by the next.
 *
 * Safe to share because a schema is immutable once built (zod fills in caches
 * derived from the schema itself, the same for every run) and parsing keeps no
 * state on it; defaults hand out fresh copies. The cache lives in a closure, not
 * in an export: the sandbox deep-freezes a preloaded module's exports, and a
 * frozen schema could not fill in those caches.
 *
 * Outside the sandbox (client, activities, tests) it is a plain memo: same
 * schemas, built once.
 */
const schemas = new Map<string, unknown>();

/** The schema named `key` (unique per module and name, e.g. "input:ProvisionInput"), built by `build` the first time. */
export function shared<T>(key: string, build: () => T): T {
  if (schemas.has(key)) return schemas.get(key) as T;
  const schema = build();
  schemas.set(key, schema);
  return schema;
}
