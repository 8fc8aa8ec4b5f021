/**
 * npm run demo [-- --json]     provision two lab nodes through Temporal, then prove
 *                              their workloads talk mTLS with SPIFFE IDs over the overlay
 * npm run demo -- --down       tear the demo down (decommission, worker, server, lab)
 * npm run demo -- --print-input demo-n1   that node's input (edit it, `nodeboot start` it)
 *
 * Leaves the Temporal dev server (Web UI on :8233), the worker and the lab
 * running, so the runs can be explored in the UI, until `--down`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { processAlive } from '../activities/host/transport.js';
import { TOOLS_BIN } from '../activities/host/exec.js';
import { checkHealthNow } from '../client/health.js';
import { startDecommission, startProvisioning } from '../client/provision.js';
import { describeLinks } from '../common/health.js';
import type { ProvisionInputJson } from '../common/input.js';
import { labProvisionInput } from '../lab/inputs.js';
import { issueNodeCredential, x509popAttestorInput } from '../lab/pki.js';
import { issueNodeHostCert, sshpopAttestorInput } from '../lab/ssh-ca.js';
import { Lab } from '../lab/lab.js';
import { isPortFree, startDevServer } from '../lab/temporal.js';
import { callWorkload } from '../lab/mtls-proof.js';
import type { ProvisionReceipt } from '../common/definitions.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEMO_DIR = path.join(repoRoot, '.demo');
const STATE_FILE = path.join(DEMO_DIR, 'state.json');
const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/nodeboot';
const TRUST_DOMAIN = 'demo.nodeboot.test';
const DEFAULT_TEMPORAL_PORT = 7233;

interface DemoState {
  labPrefix?: string;
  temporal?: { pid: number; address: string; uiUrl: string | null };
  worker?: { pid: number };
  inputs?: ProvisionInputJson[];
}

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    down: { type: 'boolean', default: false },
    'print-input': { type: 'string' },
  },
});
const say = (line: string) => {
  if (!values.json) console.log(line);
  else console.error(line);
};

function loadState(): DemoState {
  return existsSync(STATE_FILE) ? (JSON.parse(readFileSync(STATE_FILE, 'utf8')) as DemoState) : {};
}
function saveState(s: DemoState) {
  mkdirSync(DEMO_DIR, { recursive: true });
  writeFileSync(STATE_FILE, JSON.stringify(s, null, 2) + '\n');
}

function ensureTools() {
  const missing = ['temporal', 'spire-server', 'spire-agent'].filter((t) => !existsSync(path.join(TOOLS_BIN, t)));
  if (missing.length === 0 && existsSync('/usr/bin/wireguard-go')) return;
  say(`[demo] installing tools (${missing.join(', ') || 'wireguard'}): first run builds them, ~10 min`);
  const r = spawnSync('bash', [path.join(repoRoot, 'scripts/install-tools.sh')], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error('npm run tools failed');
}

/** Create the ledger's database when it is missing (the lab's PostgreSQL, trust auth). */
async function ensureDatabase(url: string) {
  const u = new URL(url);
  const name = u.pathname.slice(1);
  if (!/^[a-z_][a-z0-9_]*$/.test(name))
    throw new Error(`DATABASE_URL database name "${name}" must be a plain identifier`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const c = new pg.Client({ connectionString: admin.toString() });
  await c.connect().catch((err: Error) => {
    throw new Error(`PostgreSQL at ${u.host} is not reachable (${err.message}); start it first`);
  });
  try {
    const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
}

async function startWorker(address: string, spireServerConfig: string): Promise<number> {
  const log = openSync(path.join(DEMO_DIR, 'worker.log'), 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'workers/worker.ts')], {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', log, log],
    // The server's config tells the worker's preflight which NodeAttestors it runs.
    env: { ...process.env, TEMPORAL_ADDRESS: address, DATABASE_URL, NODEBOOT_SPIRE_SERVER_CONFIG: spireServerConfig },
  });
  child.unref();
  return child.pid!;
}

const DEMO_WORKLOADS = {
  api: { uid: 61001, path: '/ns/demo/sa/api' },
  web: { uid: 61002, path: '/ns/demo/sa/web' },
  intruder: { uid: 61003, path: '/ns/demo/sa/intruder' },
};
const idOf = (w: keyof typeof DEMO_WORKLOADS) => `spiffe://${TRUST_DOMAIN}${DEMO_WORKLOADS[w].path}`;

/**
 * The demo nodes prove who they are by where they run, not by a handed token:
 * demo-n1 by its machine certificate (x509pop; key made on the node), demo-n2
 * by its SSH host certificate (sshpop). The lab issues both credentials.
 */
async function demoInputs(lab: Lab): Promise<ProvisionInputJson[]> {
  const n1 = await issueNodeCredential(lab, 'n1', 'demo-n1');
  const n2 = await issueNodeHostCert(lab, 'n2', 'demo-n2');
  const withAttestor = (
    i: ProvisionInputJson,
    nodeAttestor: NonNullable<ProvisionInputJson['spire']['nodeAttestor']>,
  ): ProvisionInputJson => ({
    ...i,
    spire: { ...i.spire, nodeAttestor },
  });
  return [
    withAttestor(
      labProvisionInput(lab, 'n1', {
        nodeId: 'demo-n1',
        segment: 'onprem',
        workloads: [
          {
            name: 'api',
            spiffePath: DEMO_WORKLOADS.api.path,
            uid: DEMO_WORKLOADS.api.uid,
            port: 8443,
            allow: [idOf('web')],
          },
          {
            name: 'intruder',
            spiffePath: DEMO_WORKLOADS.intruder.path,
            uid: DEMO_WORKLOADS.intruder.uid,
            port: 8444,
            allow: [],
          },
        ],
      }),
      x509popAttestorInput(n1),
    ),
    withAttestor(
      labProvisionInput(lab, 'n2', {
        nodeId: 'demo-n2',
        segment: 'cloud',
        workloads: [
          {
            name: 'web',
            spiffePath: DEMO_WORKLOADS.web.path,
            uid: DEMO_WORKLOADS.web.uid,
            port: 8443,
            allow: [idOf('api')],
          },
        ],
      }),
      sshpopAttestorInput(n2),
    ),
  ];
}

async function up() {
  const t0 = Date.now();
  ensureTools();
  await ensureDatabase(DATABASE_URL);
  const state = loadState();

  if (!state.temporal || !processAlive(state.temporal.pid)) {
    say('[demo] starting the Temporal dev server (SQLite .demo/temporal.db, Web UI :8233)');
    // The frontend on Temporal's default port when it is free, so `nodeboot` and the
    // Temporal CLI find it with no configuration (else the printed export line says where).
    const port = (await isPortFree('127.0.0.1', DEFAULT_TEMPORAL_PORT)) ? DEFAULT_TEMPORAL_PORT : undefined;
    const srv = await startDevServer({
      dbFilename: path.join(DEMO_DIR, 'temporal.db'),
      logFile: path.join(DEMO_DIR, 'temporal.log'),
      detached: true,
      ...(port ? { port } : {}),
    });
    state.temporal = { pid: srv.pid, address: srv.address, uiUrl: srv.uiUrl };
    saveState(state);
  }
  let lab =
    state.labPrefix && existsSync(`/run/nodeboot/lab/${state.labPrefix}`) ? Lab.load(state.labPrefix) : undefined;
  if (!lab) {
    say('[demo] building the lab: hub (WireGuard + SPIRE server) and two nodes');
    lab = await Lab.up({ nodes: 2, trustDomain: TRUST_DOMAIN, log: (l) => say(`[lab] ${l}`) });
    state.labPrefix = lab.prefix;
    saveState(state);
  }
  if (!state.worker || !processAlive(state.worker.pid)) {
    say('[demo] starting the worker');
    state.worker = { pid: await startWorker(state.temporal.address, path.join(lab.spire!.dataDir, 'server.conf')) };
    saveState(state);
  }
  const inputs = await demoInputs(lab);
  state.inputs = inputs;
  saveState(state);

  const connection = await Connection.connect({ address: state.temporal.address });
  const client = new Client({ connection });
  try {
    say('[demo] provisioning demo-n1 and demo-n2 through Temporal');
    const started = await Promise.all(inputs.map((i) => startProvisioning(client, i)));
    const receipts: ProvisionReceipt[] = [];
    for (const s of started) {
      const receipt = await s.handle.result();
      receipts.push(receipt);
      say(formatReceipt(receipt));
    }

    say('[demo] proving the layers together: mTLS between workloads across the overlay');
    const n1 = receipts[0]!.overlayIp;
    const n2 = receipts[1]!.overlayIp;
    const input = (i: number) => inputs[i]!;
    const proof = [
      {
        what: 'web@demo-n2 calls api@demo-n1',
        expect: 'accepted',
        ...(await callWorkload(lab, input(1), 'web', DEMO_WORKLOADS.web.uid, `${n1}:8443`, idOf('api'))),
      },
      {
        what: 'api@demo-n1 calls web@demo-n2',
        expect: 'accepted',
        ...(await callWorkload(lab, input(0), 'api', DEMO_WORKLOADS.api.uid, `${n2}:8443`, idOf('web'))),
      },
      {
        what: 'intruder@demo-n1 (valid SVID, wrong SPIFFE ID) calls web@demo-n2',
        expect: 'refused by server',
        ...(await callWorkload(lab, input(0), 'intruder', DEMO_WORKLOADS.intruder.uid, `${n2}:8443`, idOf('web'))),
      },
      {
        what: "web@demo-n2 calls api@demo-n1 but demands the intruder's ID",
        expect: 'refused by client',
        ...(await callWorkload(lab, input(1), 'web', DEMO_WORKLOADS.web.uid, `${n1}:8443`, idOf('intruder'))),
      },
    ];
    // A check passes on the outcome it expects, not on any failure: a call that
    // never reached mTLS (nothing listening) is no proof of a refusal.
    const checks = proof.map((p) => ({ ...p, passed: p.outcome === p.expect }));
    const passed = checks.every((p) => p.passed);
    for (const p of checks) say(`  ${p.passed ? 'PASS' : 'FAIL'}  ${p.what}: ${p.outcome} — ${p.detail}`);

    // Day 2 starts here: one read-only check of every link of each node (checkNode, on the worker).
    say('[demo] checking every link of each node (checkNode)');
    const health = await checkHealthNow(client, inputs, { name: 'demo' });
    for (const h of health) {
      say(`  ${h.nodeId}: ${h.status === 'ok' ? 'healthy' : h.status} (${h.links.length} links, ${h.durationMs} ms)`);
      for (const line of describeLinks(h)) say(`    ${line}`);
    }
    const ui = state.temporal.uiUrl;
    const elapsedMs = Date.now() - t0;
    const next = nextCommands(state.temporal.address, ui);
    if (values.json) {
      console.log(JSON.stringify({ receipts, proof: { passed, checks }, health, ui, next, elapsedMs }, null, 2));
    } else {
      say(`\n[demo] mTLS proof: ${passed ? 'PASSED' : 'FAILED'}`);
      say(`[demo] done in ${(elapsedMs / 1000).toFixed(1)} s. The demo keeps running; try next:`);
      for (const line of next) say(`  ${line}`);
      say(`[demo] tear down with: npm run demo -- --down`);
    }
    return passed ? 0 : 1;
  } finally {
    await connection.close();
  }
}

/**
 * What a newcomer types next, exactly as printed (test/integration/demo.test.ts
 * runs each one): the node's status through nodeboot, the runs through the
 * pinned Temporal CLI, the Web UI. An export line first when the frontend is not
 * on the default port.
 */
function nextCommands(address: string, ui: string | null): string[] {
  const lines = address === `127.0.0.1:${DEFAULT_TEMPORAL_PORT}` ? [] : [`export TEMPORAL_ADDRESS=${address}`];
  lines.push(
    'npm run -s nodeboot -- status demo-n1',
    `npm run -s temporal -- workflow list --query 'NodeId="demo-n1"'`,
    'npm run -s demo -- --print-input demo-n1',
  );
  if (ui) lines.push(`${ui}/namespaces/default/workflows`);
  return lines;
}

function formatReceipt(r: ProvisionReceipt): string {
  const total = Object.values(r.durationsMs).reduce((a, b) => a + b, 0);
  return [
    `\n  node ${r.nodeId} (${r.segment})  run ${r.runId}`,
    `    overlay ${r.overlayIp} on ${r.interface}, key fingerprint ${r.keyFingerprint}`,
    ...r.hubHandshakes.map(
      (h) =>
        `    handshake with ${h.hub}: ${h.handshakeAgeSeconds}s ago; probe ${r.probe.target} ${r.probe.connectMs} ms`,
    ),
    `    SPIRE agent attested by ${r.attestationType}${r.canReattest ? ' (can re-attest)' : ''}, node alias ${r.nodeAliasId}`,
    ...r.entries.map((e) => `    entry ${e.entryId} ${e.spiffeId}${e.created ? '' : ' (existing)'}`),
    ...r.workloads.map(
      (w) => `    workload ${w.name}: SVID serial ${w.svidSerial} until ${w.svidNotAfter} (${w.svidTtlSeconds}s)`,
    ),
    `    steps: ${Object.entries(r.durationsMs)
      .map(([s, ms]) => `${s} ${ms}ms`)
      .join(', ')} (total ${total} ms)`,
  ].join('\n');
}

async function down() {
  const state = loadState();
  if (
    state.temporal &&
    processAlive(state.temporal.pid) &&
    state.worker &&
    processAlive(state.worker.pid) &&
    state.inputs
  ) {
    say('[demo] decommissioning the demo nodes through Temporal');
    const connection = await Connection.connect({ address: state.temporal.address });
    try {
      const client = new Client({ connection });
      const runs = await Promise.all(state.inputs.map((i) => startDecommission(client, i)));
      await Promise.all(
        runs.map((h) => h.result().catch((err: Error) => say(`[demo] decommission ${h.workflowId}: ${err.message}`))),
      );
    } finally {
      await connection.close();
    }
  }
  for (const [name, pid] of [
    ['worker', state.worker?.pid],
    ['temporal', state.temporal?.pid],
  ] as const) {
    if (pid && processAlive(pid)) {
      say(`[demo] stopping ${name} (pid ${pid})`);
      process.kill(pid, 'SIGTERM');
      const deadline = Date.now() + 15_000;
      while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (processAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  }
  if (state.labPrefix && existsSync(`/run/nodeboot/lab/${state.labPrefix}`)) {
    say(`[demo] tearing down lab ${state.labPrefix}`);
    await Lab.load(state.labPrefix).down();
  }
  rmSync(DEMO_DIR, { recursive: true, force: true });
  say('[demo] down');
  if (values.json) console.log(JSON.stringify({ down: true }));
  return 0;
}

/** `--print-input demo-n1`: the node's provisionNode input, to edit and `nodeboot start` against the running demo. */
function printInput(nodeId: string): number {
  const input = loadState().inputs?.find((i) => i.nodeId === nodeId);
  if (!input) {
    console.error(`[demo] no demo node "${nodeId}": run \`npm run demo\` first (its nodes: demo-n1, demo-n2)`);
    return 2;
  }
  console.log(JSON.stringify(input, null, 2));
  return 0;
}

(values['print-input'] !== undefined
  ? Promise.resolve(printInput(values['print-input']))
  : values.down
    ? down()
    : up()
).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`[demo] error: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
