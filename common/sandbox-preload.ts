/**
 * What every run in a workflow sandbox shares instead of evaluating afresh
 * (workers/bundle.ts WORKFLOW_PRELOAD_MODULES): zod, and the schema cache
 * (common/schema-cache.ts).
 *
 * Why a module of its own: zod's package declares that it has no side effects,
 * so the bundler dropped a preload of 'zod' by name (it compiled to `0;`) and
 * every run evaluated zod's modules again, about 8 ms of worker CPU per run
 * (`node --cpu-prof` on `npm run bench -- --only p3`). Importing it here and
 * handing it on keeps it in the bundle, loaded once per sandbox.
 *
 * The sandbox deep-freezes a preloaded module's exports and the sandbox's
 * globals once the preload has run. zod fills in some of its own global state
 * on first use (the default locale and memoizer in `globalThis.__zod_globalConfig`,
 * whether eval is allowed), which it could not do once frozen. So the preload
 * builds and parses, valid and invalid, one schema of every kind our schemas
 * use: that state is filled in before the freeze. Schemas themselves are built
 * per run or in common/schema-cache.ts's closure, never frozen.
 */
import { z } from 'zod';
import { shared } from './schema-cache.js';

function warmUp(): void {
  const kind = z.enum(['a', 'b']);
  const sample = z
    .object({
      name: z
        .string()
        .min(1)
        .max(8)
        .regex(/^[a-z]+$/)
        .toLowerCase(),
      count: z.number().int().positive().min(1).max(9).default(1),
      tags: z.array(z.string()).max(2).optional(),
      kind,
      literal: z.literal('x'),
      either: z.union([z.string(), z.number()]),
      tagged: z.discriminatedUnion('t', [z.object({ t: z.literal('a') }), z.object({ t: z.literal('b') })]),
      map: z.record(z.string(), z.boolean()),
      anything: z.unknown(),
      custom: z.custom<string>((v) => typeof v === 'string'),
      loose: z.object({}).passthrough(),
      fallback: z.number().catch(0),
    })
    .strict();
  const good = {
    name: 'ab',
    kind: 'a',
    literal: 'x',
    either: 1,
    tagged: { t: 'a' },
    map: { k: true },
    anything: null,
    custom: 's',
    loose: { extra: 1 },
    fallback: 'no',
  };
  const bad = {
    name: 'A B C D E F G H I',
    count: 1.5,
    tags: [1, 2, 3],
    kind: 'c',
    literal: 'y',
    either: null,
    tagged: { t: 'c' },
    map: { k: 1 },
    custom: 1,
    loose: 1,
    extra: true,
  };
  sample.parse(good);
  const failed = sample.safeParse(bad);
  if (failed.success) throw new Error('sandbox-preload: the invalid sample parsed');
  void failed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

warmUp();

export const preloaded = { z, shared };
