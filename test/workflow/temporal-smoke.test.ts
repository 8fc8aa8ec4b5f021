// The pinned Temporal dev server (built by `npm run tools`) runs workflows and
// carries our search attributes.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevServer } from '../../lab/temporal.js';
import { SEARCH_ATTRIBUTE_KEYS } from '../../common/search-attributes.js';
import { smoke } from '../fixtures/workflows/smoke.js';
import { connectTestEnv, executeWithWorker, type TemporalTestEnv } from '../helpers/temporal.js';

const smokeWorkflows = fileURLToPath(new URL('../fixtures/workflows/smoke.ts', import.meta.url));

describe('Temporal dev server', () => {
  let env: TemporalTestEnv;
  beforeAll(async () => {
    env = await connectTestEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('runs a trivial workflow on a worker', async () => {
    const result = await executeWithWorker(
      env,
      { workflowsPath: smokeWorkflows, activities: { greet: async (name: string) => `hello ${name}` } },
      smoke,
      {
        args: ['node-bootstrap'],
      },
    );
    expect(result).toBe('hello node-bootstrap!');
  });

  it('has our search attributes registered as Keyword', async () => {
    const { customAttributes } = await env.connection.operatorService.listSearchAttributes({
      namespace: env.namespace,
    });
    for (const key of SEARCH_ATTRIBUTE_KEYS) {
      expect(customAttributes?.[key.name], key.name).toBeDefined();
    }
  });

  it('refuses to start without the built binary, saying how to get it', async () => {
    await expect(startDevServer({ binary: '/nonexistent/temporal' })).rejects.toThrow(/npm run tools/);
  });
});
