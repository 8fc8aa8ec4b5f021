// One validation for every way in (issue 11): `nodeboot start`, `nodeboot fleet
// start` and the library client refuse exactly what the workflow refuses, name
// the field, and start nothing. The CLI runs in-process through its entry
// (runCli) against an address where no Temporal listens: a refusal must come
// before any connection. One case also runs the CLI as its own process.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ProvisionInputJson } from '../../common/input.js';
import { checkProvisionInput } from '../../common/validate.js';
import { InvalidInputError, validateProvisionInput } from '../../client/provision.js';
import { runCli } from '../../client/nodeboot.js';
import type { Io } from '../../client/cli/render.js';
import { EXIT } from '../../client/cli/exit-codes.js';
import { BAD_INPUTS } from '../fixtures/bad-inputs.js';
import { sampleInput } from '../fixtures/inputs.js';
import { nodeboot } from '../fixtures/nodeboot-cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'nb-validate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Port 9 (discard) on loopback: nothing listens, so reaching for Temporal would fail differently (exit 6).
const ENV = { TEMPORAL_ADDRESS: '127.0.0.1:9', NODEBOOT_CONNECT_TIMEOUT: '2' };

let n = 0;
function file(content: unknown): string {
  const p = path.join(dir, `input-${++n}.json`);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

async function cli(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    write: (s, t) => (s === 'out' ? out : err).push(t),
    isTTY: () => false,
    columns: () => 0,
  };
  const code = await runCli(argv, ENV, io, async () => '');
  const stdout = out.join('\n');
  return {
    code,
    stdout,
    stderr: err.join('\n'),
    json: (() => {
      try {
        return JSON.parse(stdout);
      } catch {
        return undefined;
      }
    })(),
  };
}

function fleetOf(node: ProvisionInputJson, extra: Record<string, unknown>[] = []) {
  const { nodeId, host, nodeDir, ...defaults } = node;
  return { fleetId: 'rack-1', defaults, nodes: [{ nodeId, host, nodeDir }, ...extra] };
}

describe('one validation: nodeboot start, nodeboot fleet start and the library client agree', () => {
  it('accepts the sample input everywhere (the cases below differ from it in one field)', () => {
    expect(checkProvisionInput(sampleInput('edge-01')).problems).toEqual([]);
  });

  for (const c of BAD_INPUTS) {
    it(`refuses ${c.why}, naming ${c.field}`, async () => {
      const checked = checkProvisionInput(c.input);
      expect(checked.ok).toBe(false);
      const named = checked.problems.find((p) => p.startsWith(`${c.field}: `));
      expect(named, checked.problems.join('\n')).toMatch(c.message);

      expect(() => validateProvisionInput(c.input)).toThrow(InvalidInputError);

      const start = await cli(['start', '--json', file(c.input)]);
      expect(start.code, start.stdout + start.stderr).toBe(EXIT.INVALID);
      expect(start.json.error.fields.map((f: { path: string }) => f.path)).toContain(c.field);

      const fleet = await cli(['fleet', 'start', '--json', file(fleetOf(c.input))]);
      expect(fleet.code, fleet.stdout + fleet.stderr).toBe(EXIT.INVALID);
      expect(fleet.json.error.fields.map((f: { path: string }) => f.path)).toContain(`nodes.0.${c.field}`);
    });
  }

  it('refuses two fleet nodes on one host with the same or a nested nodeDir', async () => {
    const node = sampleInput('rack7-01');
    const same = await cli([
      'fleet',
      'start',
      '--json',
      file(fleetOf(node, [{ nodeId: 'rack7-02', host: node.host, nodeDir: node.nodeDir }])),
    ]);
    expect(same.code).toBe(EXIT.INVALID);
    expect(same.json.error.fields).toContainEqual({
      path: 'nodes.1.nodeDir',
      message: expect.stringMatching(/same nodeDir as nodes\.0/),
    });
    // netns hosts share this machine's filesystem: another namespace does not make it another disk.
    const nested = await cli([
      'fleet',
      'start',
      '--json',
      file(
        fleetOf(node, [
          { nodeId: 'rack7-02', host: { kind: 'netns', netns: 'other-ns' }, nodeDir: `${node.nodeDir}/inner` },
        ]),
      ),
    ]);
    expect(nested.code).toBe(EXIT.INVALID);
    expect(nested.json.error.fields).toContainEqual({
      path: 'nodes.1.nodeDir',
      message: expect.stringMatching(/overlapping/),
    });
    // Different SSH hosts are different disks: the same path is fine.
    const ssh = (host: string) => ({
      kind: 'ssh',
      host,
      identityFile: '/etc/nodeboot/id',
      knownHostsFile: '/etc/nodeboot/known_hosts',
    });
    const apart = await cli([
      'fleet',
      'start',
      '--json',
      file(
        fleetOf({ ...node, host: ssh('rack7-01.example.net') as never }, [
          { nodeId: 'rack7-02', host: ssh('rack7-02.example.net'), nodeDir: node.nodeDir },
        ]),
      ),
    ]);
    expect(apart.code, apart.stdout).toBe(EXIT.UNREACHABLE); // valid: it went on to reach for Temporal
  });

  it('the separate CLI process refuses too, before reaching for Temporal', async () => {
    const c = BAD_INPUTS.find((b) => b.field === 'spire.serverAddress')!;
    const r = await nodeboot(['start', '--json', file(c.input)], ENV);
    expect(r.code, r.stderr).toBe(EXIT.INVALID);
    expect(r.json.error.fields.map((f: { path: string }) => f.path)).toContain('spire.serverAddress');
  });
});

describe("a workload named by its port alone (the built-in demo workload, now the lab's program)", () => {
  const portOnly = structuredClone(sampleInput('edge-01'));
  portOnly.workloads = [{ name: 'api', spiffePath: '/ns/prod/sa/api', uid: 1001, port: 8443 }];

  it('is refused for a new run, naming workloads.0.command', () => {
    const checked = checkProvisionInput(portOnly);
    expect(checked.ok).toBe(false);
    expect(checked.problems).toEqual([expect.stringMatching(/^workloads\.0\.command: .*no built-in workload/)]);
  });

  it('still validates for a run recorded before (replay) and for decommission, which launch nothing', () => {
    expect(checkProvisionInput(portOnly, { acceptPortOnlyWorkloads: true }).problems).toEqual([]);
    // Only the port form: a workload with neither is refused either way.
    const neither = structuredClone(portOnly);
    delete neither.workloads![0]!.port;
    expect(checkProvisionInput(neither, { acceptPortOnlyWorkloads: true }).problems).toEqual([
      expect.stringMatching(/^workloads\.0\.command: needs the program/),
    ]);
  });
});

describe('bowtie credentials and URLs (worker secrets go only where the worker allows)', () => {
  const bowtie = (over: Record<string, unknown>) => {
    const base = sampleInput('edge-01');
    return {
      ...base,
      overlay: {
        driver: 'bowtie',
        cidr: '10.200.0.0/16',
        bowtie: {
          controllerUrl: 'https://ctl1.example.net',
          auth: { kind: 'apiKey', keyIdEnv: 'NODEBOOT_CRED_BOWTIE_KEY_ID', secretEnv: 'NODEBOOT_CRED_BOWTIE_SECRET' },
          package: { source: '/var/cache/bowtie/bowtie-service_amd64.deb', sha256: 'a'.repeat(64) },
          ...over,
        },
      },
    } as ProvisionInputJson;
  };
  const cases: [string, Record<string, unknown>, string][] = [
    [
      'the database URL as a credential',
      { auth: { kind: 'apiKey', keyIdEnv: 'DATABASE_URL', secretEnv: 'NODEBOOT_CRED_X' } },
      'overlay.bowtie.auth.keyIdEnv',
    ],
    [
      'the Temporal API key as a password',
      { auth: { kind: 'session', emailEnv: 'NODEBOOT_CRED_E', passwordEnv: 'TEMPORAL_API_KEY' } },
      'overlay.bowtie.auth.passwordEnv',
    ],
    ['a plain-http controller', { controllerUrl: 'http://ctl1.example.net' }, 'overlay.bowtie.controllerUrl'],
    ['a plain-http entrypoint', { entrypoints: ['http://ctl1.example.net'] }, 'overlay.bowtie.entrypoints.0'],
    [
      'a plain-http package',
      { package: { source: 'http://pkg.example.net/b.deb', sha256: 'a'.repeat(64) } },
      'overlay.bowtie.package.source',
    ],
    [
      'a package without sha256',
      { package: { source: 'https://pkg.example.net/b.deb' } },
      'overlay.bowtie.package.sha256',
    ],
  ];

  it('accepts the well-formed bowtie input', () => {
    expect(checkProvisionInput(bowtie({})).problems).toEqual([]);
  });

  for (const [why, over, field] of cases) {
    it(`refuses ${why}, naming ${field}`, async () => {
      const r = await cli(['start', '--json', file(bowtie(over))]);
      expect(r.code, r.stdout).toBe(EXIT.INVALID);
      expect(r.json.error.fields.map((f: { path: string }) => f.path)).toContain(field);
    });
  }
});

describe('reading the input file (it may point anywhere; its content is never echoed)', () => {
  it('a file that is not JSON is refused without quoting it', async () => {
    const secret = 'root:$y$j9T$SECRETHASHPREFIX:19000:0:99999:7:::';
    const r = await cli(['start', file(secret)]);
    expect(r.code).toBe(EXIT.INVALID);
    expect(r.stderr).toMatch(/is not valid JSON/);
    expect(r.stderr + r.stdout).not.toContain('SECRETHASH');
    expect(r.stderr + r.stdout).not.toContain('root:');
  });

  it('a FIFO, a device and a directory are refused at once, not read', async () => {
    const fifo = path.join(dir, 'fifo');
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [fifo]);
    for (const p of [fifo, '/dev/zero', dir]) {
      const r = await cli(['start', p]);
      expect(r.code, p).toBe(EXIT.INVALID);
      expect(r.stderr, p).toMatch(/not a regular file/);
    }
  });

  it('an oversized file is refused by its size', async () => {
    const big = path.join(dir, 'big.json');
    writeFileSync(big, Buffer.alloc(17 * 1024 * 1024, 0x20));
    const r = await cli(['start', big]);
    expect(r.code).toBe(EXIT.INVALID);
    expect(r.stderr).toMatch(/larger than/);
  });
});
