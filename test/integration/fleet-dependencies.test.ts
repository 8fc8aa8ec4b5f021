// The fleet breaker's question, asked of real components: are the SPIRE
// server, the hub's WireGuard interface and the ledger up? Then the SPIRE
// server is stopped and a hub is misnamed, and the answer says which is down.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { Ledger } from '../../inventory/index.js';
import { ProvisionInput } from '../../common/input.js';
import { labProvisionInput } from '../../lab/inputs.js';
import { Lab } from '../../lab/lab.js';
import { stopSpireServerByDir } from '../../lab/spire-server.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { BowtieControllerStandIn } from '../standins/bowtie-controller.js';
import { loopbackTls } from '../standins/tls.js';

let lab: Lab;
let db: TestDatabase;
let ledger: Ledger;

beforeAll(async () => {
  [lab, db] = await Promise.all([
    Lab.up({ nodes: 1, ephemeral: true, trustDomain: 'deps.nodeboot.test' }),
    createTestDatabase(),
  ]);
  ledger = await Ledger.connect(db.url, { migrate: true });
});
afterAll(async () => {
  await ledger?.close();
  await lab?.down();
  await db?.drop();
});

describe('checkFleetDependencies', () => {
  it('reports every shared dependency up, then names the SPIRE server and a missing hub interface as down', async () => {
    const acts = createActivities({ ledger });
    const template = ProvisionInput.parse(labProvisionInput(lab, 'n1', { nodeId: 'deps' }));
    const hub = template.overlay.hubs[0]!;
    const req = {
      spire: { serverHost: template.spire.serverHost, serverSocketPath: template.spire.serverSocketPath },
      hubs: [hub],
    };

    const up = await acts.checkFleetDependencies(req);
    expect(up).toEqual({
      healthy: true,
      dependencies: [
        { name: 'spire-server', healthy: true },
        { name: 'hub:hub', healthy: true },
        { name: 'ledger', healthy: true },
      ],
    });

    await stopSpireServerByDir(lab.spire!.dataDir);
    const down = await acts.checkFleetDependencies({
      ...req,
      hubs: [hub, { ...hub, name: 'gone', interface: 'nbgone0' }],
    });
    expect(down.healthy).toBe(false);
    expect(down.dependencies.map((d) => [d.name, d.healthy])).toEqual([
      ['spire-server', false],
      ['hub:hub', true],
      ['hub:gone', false],
      ['ledger', true],
    ]);
  });

  it('checks the Bowtie controller (GET /ok) for bowtie segments, over verified TLS: up, then down once it stops', async () => {
    const { ca, server } = await loopbackTls();
    const controller = new BowtieControllerStandIn({ tls: server });
    const url = await controller.start();
    const acts = createActivities({ ledger, bowtie: { controllers: [new URL(url).origin], ca } });
    const req = {
      spire: { serverHost: { kind: 'local' as const }, serverSocketPath: '/nonexistent/api.sock' },
      hubs: [],
      bowtieControllerUrl: url,
    };
    const named = async (a = acts) =>
      (await a.checkFleetDependencies(req)).dependencies.filter((d) => d.name === 'bowtie-controller');
    expect(await named()).toEqual([{ name: 'bowtie-controller', healthy: true }]);
    // A controller the worker does not talk to is not asked at all: it counts as down, saying why.
    const before = controller.requests.length;
    const offList = await named(createActivities({ ledger, bowtie: { controllers: ['https://ctl.example.net'], ca } }));
    expect(offList).toEqual([
      { name: 'bowtie-controller', healthy: false, detail: expect.stringContaining('NODEBOOT_BOWTIE_CONTROLLERS') },
    ]);
    expect(controller.requests.length).toBe(before);
    await controller.stop();
    expect(await named()).toEqual([{ name: 'bowtie-controller', healthy: false, detail: 'not serving' }]);
  });
});
