// docker-compose.yml and the Dockerfile, checked without a Docker engine:
// pinned images, health checks and start order, the search attributes the
// workflows use, and a worker environment that is exactly what workers/config.ts reads.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { TASK_QUEUE } from '../../common/ids.js';
import { SEARCH_ATTRIBUTE_KEYS } from '../../common/search-attributes.js';
import { WorkerConfig, loadWorkerConfig } from '../../workers/config.js';

const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url));
const composeText = readFileSync(root('docker-compose.yml'), 'utf8');
const dockerfile = readFileSync(root('Dockerfile'), 'utf8');

/** The top-level folders of every repo file reachable by relative imports from `entries` (the worker loads them all). */
function foldersImportedFrom(entries: string[]): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(root(file), 'utf8');
    for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)\.js'/g)) {
      visit(path.posix.join(path.posix.dirname(file), `${m[1]}.ts`));
    }
  };
  entries.forEach(visit);
  return [...new Set([...seen].map((f) => f.split('/')[0]!))].sort();
}

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, string | number | boolean | null> | string[];
  depends_on?: Record<string, { condition?: string }> | string[];
  healthcheck?: { test?: string[] | string; disable?: boolean };
  command?: string[] | string;
  ports?: string[];
  restart?: string;
}
interface Compose {
  services: Record<string, Service>;
}

// js-yaml currently resolves through eslint; it belongs in devDependencies (see docs/observability.md).
async function parseYaml(text: string): Promise<unknown> {
  const specifier: string = 'js-yaml';
  const mod = (await import(specifier)) as {
    load?: (t: string) => unknown;
    default?: { load: (t: string) => unknown };
  };
  const load = mod.load ?? mod.default?.load;
  if (!load) throw new Error('js-yaml has no load(): add "js-yaml" to devDependencies');
  return load(text);
}

const compose = (await parseYaml(composeText)) as Compose;
const services = compose.services;

function env(s: Service): Record<string, string> {
  const e = s.environment ?? {};
  if (Array.isArray(e)) return Object.fromEntries(e.map((kv) => [kv.split('=')[0]!, kv.split('=').slice(1).join('=')]));
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

function dependsOn(s: Service): Record<string, { condition?: string }> {
  const d = s.depends_on ?? {};
  return Array.isArray(d) ? Object.fromEntries(d.map((n) => [n, {}])) : d;
}

/** Compose interpolation as `docker compose` does it, given the variables in `vars`. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}/g, (m, name: string) => {
    if (name in vars) return vars[name]!;
    if (/^\$\{[A-Z0-9_]+:-/.test(m)) return m.slice(m.indexOf(':-') + 2, -1);
    throw new Error(`${m} is required`);
  });
}

const workerName = Object.keys(services).find((n) => services[n]!.build !== undefined)!;
const worker = services[workerName]!;
const workerEnv = env(worker);

describe('docker-compose.yml', () => {
  it('has the stack: PostgreSQL, Temporal on PostgreSQL, the Web UI, a schema job, an init job and our worker', () => {
    expect(Object.keys(services).sort()).toEqual([
      'nodeboot-worker',
      'postgresql',
      'temporal',
      'temporal-init',
      'temporal-schema',
      'temporal-ui',
    ]);
    expect(workerName).toBe('nodeboot-worker');
    expect(services.temporal!.image).toMatch(/^temporalio\/server:/);
    expect(env(services.temporal!)).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(services['temporal-ui']!.image).toMatch(/^temporalio\/ui:/);
    expect(env(services['temporal-ui']!).TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('passes dclint: the Compose-spec schema and its lint rules (.dclintrc.yaml)', async () => {
    const r = await execa(
      process.execPath,
      [root('node_modules/dclint/bin/dclint.cjs'), '--formatter', 'json', root('docker-compose.yml')],
      { reject: false, cwd: root('.') },
    );
    const problems = JSON.parse(String(r.stdout)) as { messages: { type: string; rule: string; message: string }[] }[];
    expect(problems.flatMap((f) => f.messages.map((m) => `${m.type} ${m.rule}: ${m.message}`))).toEqual([]);
    expect(r.exitCode).toBe(0);
  });

  it('pins every image to a version (no :latest, no bare name); the worker is built from this repo', () => {
    expect(worker.image, 'the worker has build, not image (dclint: no-build-and-image)').toBeUndefined();
    for (const [name, s] of Object.entries(services).filter(([n]) => n !== workerName)) {
      expect(s.image, `${name} has an image`).toBeTypeOf('string');
      const image = s.image!;
      const tag = image.includes('@sha256:') ? 'digest' : image.split('/').pop()!.split(':')[1];
      expect(tag, `${name}: ${image} is pinned`).toBeDefined();
      expect(tag, `${name}: ${image}`).not.toBe('latest');
      expect(tag === 'digest' || /\d+\.\d+/.test(tag!), `${name}: ${image} names a version`).toBe(true);
    }
    // The admin-tools jobs match the server version.
    const serverVersion = services.temporal!.image!.split(':')[1];
    expect(services['temporal-schema']!.image).toBe(`temporalio/admin-tools:${serverVersion}`);
    expect(services['temporal-init']!.image).toBe(`temporalio/admin-tools:${serverVersion}`);
  });

  it('health-checks postgresql, temporal and the worker', () => {
    for (const name of ['postgresql', 'temporal', 'nodeboot-worker']) {
      const hc = services[name]!.healthcheck;
      expect(hc?.test, `${name} healthcheck`).toBeDefined();
      expect(hc?.disable).not.toBe(true);
    }
    expect(JSON.stringify(services.postgresql!.healthcheck!.test)).toContain('pg_isready');
    expect(JSON.stringify(worker.healthcheck!.test)).toContain(`:${workerEnv.NODEBOOT_METRICS_PORT}/metrics`);
  });

  it('orders start-up with depends_on conditions that the targets can satisfy', () => {
    const conditions = new Set(['service_healthy', 'service_completed_successfully', 'service_started']);
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, { condition }] of Object.entries(dependsOn(s))) {
        expect(services[dep], `${name} depends on an existing service ${dep}`).toBeDefined();
        expect(conditions.has(condition ?? ''), `${name} -> ${dep} has a condition`).toBe(true);
        if (condition === 'service_healthy')
          expect(services[dep]!.healthcheck, `${dep} needs a healthcheck`).toBeDefined();
        if (condition === 'service_completed_successfully')
          expect(services[dep]!.restart ?? 'no').not.toMatch(/^(always|unless-stopped)$/);
      }
    }
    expect(dependsOn(services.temporal!)).toEqual({
      postgresql: { condition: 'service_healthy' },
      'temporal-schema': { condition: 'service_completed_successfully' },
    });
    expect(dependsOn(worker)).toMatchObject({
      postgresql: { condition: 'service_healthy' },
      temporal: { condition: 'service_healthy' },
      'temporal-init': { condition: 'service_completed_successfully' },
    });
  });

  it('sets up the Temporal schemas with temporal-sql-tool', () => {
    const script = String(services['temporal-schema']!.command);
    for (const db of ['temporal', 'temporal_visibility']) {
      expect(script).toContain(`--db ${db} update-schema -d /etc/temporal/schema/postgresql/v12/`);
    }
    expect(script).toContain('temporal-sql-tool --plugin postgres12');
  });

  it('registers every search attribute the workflows use, as Keyword', () => {
    const script = String(services['temporal-init']!.command);
    expect(script).toContain('temporal operator search-attribute create');
    expect(script).toContain('--type Keyword');
    const listed = /for name in ([A-Za-z ]+); do/.exec(script)?.[1]?.trim().split(/\s+/);
    expect(listed?.sort()).toEqual(SEARCH_ATTRIBUTE_KEYS.map((k) => k.name).sort());
    expect(SEARCH_ATTRIBUTE_KEYS.every((k) => k.type === 'KEYWORD')).toBe(true);
  });

  it('gives the worker only variables workers/config.ts reads, and the ones that matter', () => {
    const known = new Set(Object.keys(WorkerConfig.shape));
    for (const key of Object.keys(workerEnv)) expect(known.has(key), `${key} is read by workers/config.ts`).toBe(true);
    for (const key of [
      'TEMPORAL_ADDRESS',
      'TEMPORAL_NAMESPACE',
      'TEMPORAL_TASK_QUEUE',
      'DATABASE_URL',
      'NODEBOOT_MAX_CONCURRENT_ACTIVITIES',
      'NODEBOOT_METRICS_PORT',
      'NODEBOOT_TEMPORAL_METRICS_PORT',
    ]) {
      expect(workerEnv, key).toHaveProperty(key);
    }
    expect(workerEnv).not.toHaveProperty('NODEBOOT_FAULT_PAUSE'); // tests only
  });

  it("the worker's environment passes the worker's own validation and points at the stack", () => {
    const resolved = Object.fromEntries(
      Object.entries(workerEnv).map(([k, v]) => [k, interpolate(v, { POSTGRES_PASSWORD: 's3cret' })]),
    );
    const config = loadWorkerConfig(resolved);
    expect(config.TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(config.TEMPORAL_TASK_QUEUE).toBe(TASK_QUEUE);
    expect(new URL(config.DATABASE_URL).host).toBe('postgresql:5432');
    expect(new URL(config.DATABASE_URL).pathname).toBe(`/${env(services.postgresql!).POSTGRES_DB}`);
    expect(config.NODEBOOT_METRICS_HOST).toBe('0.0.0.0');
    expect(config.NODEBOOT_METRICS_PORT).toBeGreaterThan(0);
    expect(config.NODEBOOT_TEMPORAL_METRICS_PORT).toBeGreaterThan(0);
    expect(config.OTEL_EXPORTER_OTLP_ENDPOINT).toBeUndefined(); // tracing off by default
    // Metrics ports are published (on loopback) and exposed by the image.
    for (const p of [config.NODEBOOT_METRICS_PORT, config.NODEBOOT_TEMPORAL_METRICS_PORT]) {
      expect(worker.ports).toContain(`127.0.0.1:${p}:${p}`);
      expect(dockerfile).toMatch(new RegExp(`^EXPOSE .*\\b${p}\\b`, 'm'));
    }
  });

  it('keeps the password out of the file: required from the environment', () => {
    expect(composeText).toContain('${POSTGRES_PASSWORD:?');
    expect(() => interpolate(workerEnv.DATABASE_URL!, {})).toThrow(/POSTGRES_PASSWORD/);
  });
});

describe('Dockerfile', () => {
  it('builds the worker from a pinned node:20 image with npm ci and runs it with tsx', () => {
    expect(dockerfile).toMatch(/^FROM node:20\.\d+\.\d+-\S+$/m);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^CMD \["node", "--import", "tsx", "workers\/worker\.ts"\]$/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    // Node-side tools stay on the nodes; the worker only needs the ssh client for the ssh transport.
    expect(dockerfile).toMatch(/apt-get install -y --no-install-recommends openssh-client/);
    const instructions = dockerfile
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .join('\n');
    expect(instructions).not.toMatch(/wireguard-tools|spire-agent/i);
  });

  it('copies every source folder the worker imports', () => {
    const copied = [...dockerfile.matchAll(/^COPY (\S+) /gm)].map((m) => m[1]);
    const imported = foldersImportedFrom(['workers/worker.ts', 'workflows/index.ts']);
    expect(imported).toEqual(expect.arrayContaining(['common', 'activities', 'inventory', 'workflows', 'workers']));
    for (const dir of imported) expect(copied).toContain(dir);
  });
});
