// The bowtie driver's input: what it accepts, the defaults it fills in, and
// the errors that name the bad field; plus the config.toml it seeds and the
// pieces of the driver that are pure functions.
import { describe, expect, it } from 'vitest';
import { renderConfig } from '../../activities/overlay/bowtie/node.js';
import { ageSeconds, policyIds } from '../../activities/overlay/bowtie/steps.js';
import { ProvisionInput, type ProvisionInputJson } from '../../common/input.js';
import { describeZodError } from '../../common/names.js';
import { sampleInput } from '../fixtures/inputs.js';

const BOWTIE = {
  controllerUrl: 'https://ctl1.example.net',
  auth: { kind: 'apiKey', keyIdEnv: 'NODEBOOT_CRED_BOWTIE_KEY_ID', secretEnv: 'NODEBOOT_CRED_BOWTIE_KEY_SECRET' },
  package: { source: '/var/cache/bowtie/bowtie-service_amd64.deb', sha256: 'a'.repeat(64) },
};

function bowtieInput(bowtie: Record<string, unknown> = {}, overlay: Record<string, unknown> = {}): ProvisionInputJson {
  const base = sampleInput('edge-01');
  return {
    ...base,
    overlay: { driver: 'bowtie', cidr: '10.200.0.0/16', bowtie: { ...BOWTIE, ...bowtie }, ...overlay },
  } as ProvisionInputJson;
}

function errorsOf(raw: unknown): string[] {
  const r = ProvisionInput.safeParse(raw);
  return r.success ? [] : describeZodError(r.error);
}

describe('bowtie driver input', () => {
  it('accepts a minimal bowtie overlay and fills in the defaults', () => {
    const v = ProvisionInput.parse(bowtieInput());
    expect(v.overlay.driver).toBe('bowtie');
    expect(v.overlay.hubs).toEqual([]);
    expect(v.overlay.bowtie).toMatchObject({
      approval: 'approve',
      localApiPort: 17133,
      seenWithinSeconds: 120,
      trailingSlashFallback: true,
      clientConfig: {},
      package: { source: BOWTIE.package.source, sha256: BOWTIE.package.sha256, name: 'bowtie-service' },
    });
    // The default driver is still wireguard, and its inputs parse as before.
    expect(ProvisionInput.parse(sampleInput('edge-02')).overlay.driver).toBe('wireguard');
  });

  it('names the field for each driver mismatch', () => {
    const { bowtie: _b, ...noBlock } = bowtieInput().overlay as Record<string, unknown>;
    expect(errorsOf({ ...bowtieInput(), overlay: noBlock })).toEqual([
      'overlay.bowtie: is required for driver "bowtie"',
    ]);
    const wgWithBowtie = sampleInput('edge-03');
    (wgWithBowtie.overlay as Record<string, unknown>).bowtie = BOWTIE;
    expect(errorsOf(wgWithBowtie)).toEqual(['overlay.bowtie: is only for driver "bowtie"']);
    const wgNoHubs = sampleInput('edge-04');
    wgNoHubs.overlay.hubs = [];
    expect(errorsOf(wgNoHubs)).toEqual(['overlay.hubs: needs at least one hub']);
    expect(errorsOf(bowtieInput({}, { hubs: sampleInput('x').overlay.hubs }))).toEqual([
      'overlay.hubs: are for driver "wireguard" (Bowtie controllers are the peers)',
    ]);
  });

  it('names each bad bowtie field', () => {
    expect(errorsOf(bowtieInput({ approval: 'preApprove' }))).toEqual([
      'overlay.bowtie.serial: is required when approval is "preApprove"',
    ]);
    // (The wording of the URL and variable-name rules is common/input.ts's; here: one error, naming the field.)
    expect(errorsOf(bowtieInput({ controllerUrl: 'https://admin:pw@ctl1.example.net' }))).toEqual([
      expect.stringMatching(/^overlay\.bowtie\.controllerUrl: /),
    ]);
    expect(
      errorsOf(bowtieInput({ auth: { kind: 'apiKey', keyIdEnv: 'lower-case', secretEnv: 'NODEBOOT_CRED_S' } })),
    ).toEqual([expect.stringMatching(/^overlay\.bowtie\.auth\.keyIdEnv: /)]);
    expect(errorsOf(bowtieInput({ package: { source: 'relative/x.deb', sha256: 'a'.repeat(64) } }))).toEqual([
      expect.stringMatching(/^overlay\.bowtie\.package\.source: /),
    ]);
    expect(errorsOf(bowtieInput({ package: { source: '/x.deb', sha256: 'abc' } }))).toEqual([
      'overlay.bowtie.package.sha256: must be 64 lowercase hex characters',
    ]);
    expect(errorsOf(bowtieInput({ clientConfig: { entrypoint: 'https://elsewhere' } }))).toEqual([
      'overlay.bowtie.clientConfig.entrypoint: is set by the driver',
    ]);
    expect(errorsOf(bowtieInput({ clientConfig: { 'bad key': 1 } }))[0]).toMatch(
      /^overlay\.bowtie\.clientConfig\.bad key: must be a bare TOML key/,
    );
    expect(errorsOf(bowtieInput({ password: 'x' }))[0]).toMatch(/^overlay\.bowtie: Unrecognized key/);
  });

  it('seeds config.toml with the entrypoints, never prompting, then the extra keys', () => {
    const b = ProvisionInput.parse(
      bowtieInput({
        entrypoints: ['https://ctl1.example.net/', 'https://ctl2.example.net/'],
        clientConfig: { log_level: 'info', retries: 3, quiet: true, tags: ['a', 'b"c'] },
      }),
    ).overlay.bowtie!;
    expect(renderConfig(b)).toBe(
      [
        '# Written by node-bootstrap (overlay driver "bowtie"). Changes are overwritten on the next bootstrap.',
        'entrypoint = ["https://ctl1.example.net/", "https://ctl2.example.net/"]',
        'auth_prompt_strategy = "never"',
        'log_level = "info"',
        'retries = 3',
        'quiet = true',
        'tags = ["a", "b\\"c"]',
        '',
      ].join('\n'),
    );
    // Without entrypoints, the controller is the entrypoint.
    expect(renderConfig(ProvisionInput.parse(bowtieInput()).overlay.bowtie!)).toContain(
      'entrypoint = ["https://ctl1.example.net"]\n',
    );
  });

  it('policy ids are the same for the same segment and SPIRE server, and differ otherwise', () => {
    const a = policyIds(ProvisionInput.parse(bowtieInput()));
    const again = policyIds(ProvisionInput.parse({ ...bowtieInput(), nodeId: 'edge-99' }));
    const other = policyIds(ProvisionInput.parse({ ...bowtieInput(), segment: 'cloud' }));
    expect(again).toEqual(a);
    expect(new Set([...Object.values(a), ...Object.values(other)]).size).toBe(8);
    for (const id of Object.values(a))
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('reads last_seen as ISO 8601 or epoch seconds, and refuses to guess otherwise', () => {
    const now = Date.parse('2026-11-23T12:00:00Z');
    expect(ageSeconds('2026-11-23T11:59:30Z', now)).toBe(30);
    expect(ageSeconds(String(now / 1000 - 45), now)).toBe(45);
    expect(ageSeconds('yesterday', now)).toBeNull();
    expect(ageSeconds('', now)).toBeNull();
  });
});
