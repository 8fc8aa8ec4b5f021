/**
 * Bootstrap steps 1-3 with the Bowtie driver (`overlay.driver: "bowtie"`).
 * The Bowtie client on the node makes its own WireGuard key and tunnel; we
 * seed and install it, approve its device on the controller, put it in the
 * segment's policy, and check the controller's view *and* our own probe.
 *
 *   install  controllers on the worker's allow-list → package fetched and its
 *            sha256 checked → seed config.toml → (pre-approve by serial) → install
 *   key      policy upserts → device id from the local API → approve → group
 *            → wait for the client's address in overlay.cidr → ledger
 *   health   device accepted and recently seen → TCP probe to the SPIRE server
 *
 * Undo: reject and delete the device, take it out of the group, release the
 * address (key); withdraw our pre-approval, purge the package and the seeded
 * config (install). The segment's group, resource and policy stay: other nodes
 * of the segment use them.
 */
import type { BowtieSpec, ProvisionInput } from '../../../common/input.js';
import { heartbeat } from '../../host/heartbeat.js';
import { ToolError } from '../../host/exec.js';
import type { OverlayDriver, StepRequest, UndoRequest } from '../../types.js';
import { cidrContains } from '../../../common/ipv4.js';
import * as ip from '../ip.js';
import { probeThroughTunnel, stepDeadline } from '../probe.js';
import { fsKeyOf } from '../../paths.js';
import type { StepDeps } from '../../deps.js';
import { claimNodeDir, fingerprint } from '../shared.js';
import { BowtieController, ControllerError, uuidV5, type BowtieDevice } from './controller.js';
import * as client from './node.js';
import { assertAllowedController, type BowtieTrust } from './trust.js';

export interface BowtieDeps extends StepDeps {
  /** Where the worker reads the controller credentials named in the input (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** The controllers this worker talks to and the extra CA it trusts (worker config). Unset: no controller. */
  bowtie?: BowtieTrust;
}

const POLL_MS = 500;
/** How long an uninstall waits for a running client to report the device it enrolls again after a delete. */
const REENROLL_WAIT_MS = 5_000;

/** The ids of the segment's policy objects: the same segment always gets the same ones. */
export function policyIds(input: Pick<ProvisionInput, 'segment' | 'spire'>) {
  const seg = `nodeboot/segment/${input.segment}`;
  const resource = `${seg}/spire-server/${input.spire.serverAddress}:${input.spire.serverPort}`;
  return {
    deviceGroup: uuidV5(`${seg}/device-group`),
    resource: uuidV5(resource),
    resourceGroup: uuidV5(`${resource}/resource-group`),
    policy: uuidV5(`${resource}/accept`),
  };
}

/** The Bowtie driver's steps 1-3 (their evidence types: OverlayDriver, activities/types.ts). */
export function createBowtieSteps(deps: BowtieDeps): OverlayDriver {
  const node = (input: ProvisionInput) => deps.transport(input.host);
  const spec = (input: ProvisionInput): BowtieSpec => {
    if (!input.overlay.bowtie)
      throw new ToolError('InvalidInput', 'overlay.bowtie: is required for driver "bowtie"', 'input');
    return input.overlay.bowtie;
  };
  const stageDir = (input: ProvisionInput) => `${input.nodeDir}/bowtie`;

  /**
   * The controller and every entrypoint the node is pointed at are on the
   * worker's allow-list (InvalidInput otherwise). Runs before anything changes
   * and before any credential is read.
   */
  function assertAllowed(input: ProvisionInput): void {
    const b = spec(input);
    assertAllowedController(deps.bowtie, b.controllerUrl, 'overlay.bowtie.controllerUrl');
    (b.entrypoints ?? []).forEach((e, i) =>
      assertAllowedController(deps.bowtie, e, `overlay.bowtie.entrypoints[${i}]`),
    );
  }

  /** Whether assertAllowed passes (undos skip a controller the worker never talked to). */
  function allowed(input: ProvisionInput): boolean {
    try {
      assertAllowed(input);
      return true;
    } catch {
      return false;
    }
  }

  function controller(input: ProvisionInput): BowtieController {
    assertAllowed(input);
    const b = spec(input);
    const env = deps.env ?? process.env;
    const read = (name: string, field: string) => {
      const v = env[name];
      if (!v)
        throw new ControllerError(
          'OverlayAuth',
          `the worker has no ${name} in its environment (overlay.bowtie.auth.${field})`,
        );
      return v;
    };
    const auth =
      b.auth.kind === 'apiKey'
        ? {
            kind: 'apiKey' as const,
            keyId: read(b.auth.keyIdEnv, 'keyIdEnv'),
            secret: read(b.auth.secretEnv, 'secretEnv'),
          }
        : {
            kind: 'session' as const,
            email: read(b.auth.emailEnv, 'emailEnv'),
            password: read(b.auth.passwordEnv, 'passwordEnv'),
            loginField: b.auth.loginField,
          };
    return new BowtieController({
      url: b.controllerUrl,
      auth,
      timeoutMs: b.requestTimeoutMs,
      trailingSlashFallback: b.trailingSlashFallback,
      signal: deps.signal(),
      allowedOrigins: deps.bowtie?.controllers ?? [],
      ca: deps.bowtie?.ca,
    });
  }

  /** Poll `probe` until it returns a value, or null once `deadline` (epoch ms) has passed. */
  async function pollUntil<T>(deadline: number, what: string, probe: () => Promise<T | null>): Promise<T | null> {
    for (;;) {
      const v = await probe();
      if (v !== null || Date.now() > deadline) return v;
      heartbeat(what);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** pollUntil, failing with `onTimeout()` when the deadline passes. */
  async function waitFor<T>(
    deadline: number,
    what: string,
    probe: () => Promise<T | null>,
    onTimeout: () => Error,
  ): Promise<T> {
    const v = await pollUntil(deadline, what, probe);
    if (v === null) throw onTimeout();
    return v;
  }

  /**
   * Step 1: controllers allowed, package checked, config seeded, device
   * pre-approved (if so chosen), package installed. A bad package (4xx, wrong
   * sha256, not on the node) fails before the seed and the pre-approval.
   */
  async function installOverlay({ input }: StepRequest) {
    assertAllowed(input); // first: nothing changes, nothing is sent, for a controller the worker does not trust
    const t = node(input);
    const b = spec(input);
    const signal = deps.signal();
    await deps.ledger.upsertNode(input.nodeId, input.segment, 'provisioning');
    await claimNodeDir(deps.ledger, input); // a second live node on this nodeDir stops here, before the node changes
    const present = await client.installedVersion(t, b, { signal });
    let deb: string | null = null;
    if (!present) {
      heartbeat('staging the client package');
      const fetched = client.isUrl(b) ? await client.fetchPackage(b, { signal, ca: deps.bowtie?.ca }) : undefined;
      deb = await client.stagePackage(t, b, stageDir(input), { signal, fetched });
    }
    // Before the client first runs: it reads the config at start, and a
    // pre-approved serial enrolls straight into "accepted".
    await client.seedConfig(t, b, { signal });
    if (b.approval === 'preApprove') await controller(input).preApprove(b.serial!, 'accepted');
    if (present) return { toolVersion: `${b.package.name} ${present}`, alreadyPresent: true };
    await client.installPackage(t, b, deb!, { signal });
    const version = await client.installedVersion(t, b, { signal });
    if (!version)
      throw new ToolError('ToolFailed', `${b.package.name} is not installed after installing ${deb}`, 'dpkg');
    return { toolVersion: `${b.package.name} ${version}`, alreadyPresent: false };
  }

  async function undoInstallOverlay({ input }: UndoRequest) {
    const t = node(input);
    const b = spec(input);
    const signal = deps.signal();
    const removed: string[] = [];
    // A controller off the worker's allow-list was never called (installOverlay
    // refuses it first): nothing of ours is there, and it gets no credential now.
    const onController = allowed(input);
    // Our pre-approval goes first: while it stands, a client enrolling again is
    // accepted at once. A controller that fails here must not stop the node's
    // cleanup: its error is raised at the end.
    let revokeError: unknown;
    if (onController && b.approval === 'preApprove') {
      try {
        if (await controller(input).revokePreApproval(b.serial!)) removed.push(`pre-approval of ${b.serial}`);
      } catch (err) {
        revokeError = err;
      }
    }
    // A client still running after its device was deleted (step 2's undo)
    // enrolls again: note the id it enrolls under, stop it (purge), then
    // remove what it re-created.
    const reenrolled = await reenrolledDeviceIds(input);
    // The node's client, config and staged package are ours only when the nodeDir is (or was never claimed).
    const holder = await deps.ledger.nodeDirHolder(fsKeyOf(input.host), input.nodeDir);
    if (holder === null || holder === input.nodeId) {
      if (await client.purgePackage(t, b, { signal })) removed.push(`package ${b.package.name}`);
      if (await client.removeConfig(t, b, { signal })) removed.push('client config');
      if (await client.removeStaged(t, b, stageDir(input), { signal })) removed.push('staged package');
      if (await deps.ledger.releaseNodeDir(input.nodeId)) removed.push(`claim on ${input.nodeDir}`);
    }
    // (The node's serial, when the input gives it, finds such a device too.)
    if (revokeError !== undefined) throw revokeError;
    if (onController && (reenrolled.length > 0 || b.serial))
      removed.push(...(await removeDevices(input, controller(input), reenrolled)));
    return { removed };
  }

  /** Find the node's device: the id its client reports, or (a client that reports none) the controller's device with our serial. */
  async function findDevice(input: ProvisionInput, ctl: BowtieController, deadline: number): Promise<BowtieDevice> {
    const b = spec(input);
    const t = node(input);
    let lastView: client.LocalDeviceView | null = null;
    return waitFor(
      deadline,
      'waiting for the Bowtie client to enroll',
      async () => {
        lastView = await client.readLocalApi(t, b.localApiPort, { signal: deps.signal() });
        const id = lastView?.pendingId ?? lastView?.activeId;
        if (!id && !b.serial) return null;
        const devices = await ctl.listDevices();
        // The id the client reports is the device; only a client that reports none is found by serial (the latest seen).
        if (id) return devices.find((d) => d.id === id) ?? null;
        const bySerial = devices
          .filter((d) => d.serial === b.serial)
          .sort((x, y) => (ageSeconds(x.last_seen) ?? Infinity) - (ageSeconds(y.last_seen) ?? Infinity));
        return bySerial[0] ?? null;
      },
      () =>
        new ToolError(
          'OverlayDeviceTimeout',
          lastView
            ? `the Bowtie client on ${input.nodeId} answers but its device is not on the controller ${b.controllerUrl}`
            : `the Bowtie client's local API on ${input.nodeId} (127.0.0.1:${b.localApiPort}) did not answer`,
          'bowtie',
        ),
    );
  }

  /**
   * Step 2: the client made its key on the node; we approve the device the
   * controller knows by that key, put it in the segment's policy, and record
   * device id, public key and the address the controller gave it.
   */
  async function issueOverlayKey({ input }: StepRequest) {
    const t = node(input);
    const b = spec(input);
    const signal = deps.signal();
    const deadline = stepDeadline(input.timeouts.issueOverlayKey, Date.now());
    const ctl = controller(input);
    const ids = policyIds(input);
    await ctl.upsertDeviceGroup({
      id: ids.deviceGroup,
      name: `nodeboot-${input.segment}`,
      description: `node-bootstrap: nodes of segment ${input.segment}`,
    });
    await ctl.upsertTcpResource({
      id: ids.resource,
      name: `nodeboot-${input.segment}-spire-server`,
      ip: input.spire.serverAddress,
      ports: [input.spire.serverPort],
    });
    await ctl.upsertResourceGroup({
      id: ids.resourceGroup,
      name: `nodeboot-${input.segment}-spire-server`,
      resources: [ids.resource],
    });
    await ctl.upsertAcceptPolicy({
      id: ids.policy,
      deviceGroupId: ids.deviceGroup,
      resourceGroupId: ids.resourceGroup,
    });
    heartbeat('segment policy in place');

    const device = await findDevice(input, ctl, deadline);
    if (device.state === 'rejected') {
      throw new ControllerError(
        'OverlayRejected',
        `device "${device.name}" (serial ${device.serial}) is rejected on the controller: an operator rejected it; delete it there to let it enroll again`,
      );
    }
    if (device.state !== 'accepted') await ctl.setDeviceState(device.id, 'accepted');
    await ctl.addDevicesToGroup(ids.deviceGroup, [device.id]);
    await deps.ledger.recordOverlayDevice({
      nodeId: input.nodeId,
      driver: 'bowtie',
      deviceId: device.id,
      publicKey: device.public_key,
      controllerUrl: b.controllerUrl,
    });
    heartbeat('device approved');

    // The client learns it was accepted and brings its tunnel up with the address the controller gave it.
    const addr = await waitFor(
      deadline,
      'waiting for the Bowtie tunnel',
      async () => (await ip.allAddresses(t, { signal })).find((a) => cidrContains(input.overlay.cidr, a.ip)) ?? null,
      () =>
        new ToolError(
          'OverlayDeviceTimeout',
          `the Bowtie client on ${input.nodeId} was accepted but has no address in ${input.overlay.cidr}`,
          'bowtie',
        ),
    );
    await deps.ledger.claimAddress(input.nodeId, input.overlay.cidr, addr.ip);
    const controllers = await ctl.listControllers();
    return {
      overlayIp: addr.ip,
      publicKey: device.public_key,
      keyFingerprint: fingerprint(device.public_key),
      interface: addr.ifname,
      deviceId: device.id,
      hubs: controllers.map((c) => ({
        name: c.id,
        publicKey: c.public_key ?? '',
        endpoint: c.public_address ? `${c.public_address}:${c.wireguard_port ?? ''}` : '',
      })),
    };
  }

  /**
   * Reject, then delete, every device of this node the controller has (the
   * ids the ledger and the client know, and our serial's); then take them out
   * of the segment's group. Returns what went.
   */
  async function removeDevices(
    input: ProvisionInput,
    ctl: BowtieController,
    known: Iterable<string>,
  ): Promise<string[]> {
    const b = spec(input);
    const ids = new Set(known);
    const removed: string[] = [];
    const devices = await ctl.listDevices();
    for (const d of devices) if (ids.has(d.id) || (b.serial && d.serial === b.serial)) ids.add(d.id);
    for (const d of devices.filter((x) => ids.has(x.id))) {
      if (await ctl.removeDevice(d.id)) removed.push(`device ${d.name}`);
    }
    if (ids.size > 0) {
      try {
        await ctl.removeDevicesFromGroup(policyIds(input).deviceGroup, [...ids]);
      } catch (err) {
        if (!(err instanceof ControllerError && err.status === 404)) throw err; // no group: nothing to leave
      }
    }
    return removed;
  }

  /** The device ids the client on the node reports (`answered`: its local API is up); an unreachable node is returned as the error, not thrown. */
  async function clientDeviceIds(
    input: ProvisionInput,
  ): Promise<{ ids: string[]; answered: boolean; error?: unknown }> {
    try {
      const view = await client.readLocalApi(node(input), spec(input).localApiPort, { signal: deps.signal() });
      return { ids: [view?.pendingId, view?.activeId].filter((x): x is string => !!x), answered: view !== null };
    } catch (error) {
      return { ids: [], answered: false, error };
    }
  }

  /**
   * The ids a running client enrolls under. Right after its device is deleted
   * a client reports none until it has enrolled again (the stand-in within a
   * second): read again for up to REENROLL_WAIT_MS, so that an enrollment
   * racing the purge is not missed and left on the controller.
   */
  async function reenrolledDeviceIds(input: ProvisionInput): Promise<string[]> {
    const ids = await pollUntil(
      Date.now() + REENROLL_WAIT_MS,
      'waiting for the Bowtie client to report its device',
      async () => {
        const seen = await clientDeviceIds(input);
        return seen.ids.length > 0 || !seen.answered ? seen.ids : null;
      },
    );
    return ids ?? [];
  }

  async function undoIssueOverlayKey({ input }: UndoRequest) {
    const recorded = await deps.ledger.getOverlayDevice(input.nodeId);
    // An unreachable node must not stop the controller cleanup (that is what
    // lets a device onto the overlay); its error is raised at the end.
    const onNode = await clientDeviceIds(input);
    // A controller off the allow-list with no device of ours recorded was never
    // called: skip it. One with a device recorded (the list changed since) is
    // refused by controller(): the operator must allow it again to clean it.
    const skip = !recorded && !allowed(input);
    const removed = skip
      ? []
      : await removeDevices(input, controller(input), [...(recorded ? [recorded.deviceId] : []), ...onNode.ids]);
    if (await deps.ledger.removeOverlayDevice(input.nodeId)) removed.push('ledger device');
    const released = await deps.ledger.releaseAddress(input.nodeId, input.overlay.cidr);
    if (released) removed.push(`address ${released}`);
    if (onNode.error !== undefined) throw onNode.error;
    return { removed };
  }

  /** Step 3: the controller says accepted and recently seen, and our probe gets through the tunnel. */
  async function gatePeerHealth({ input }: StepRequest) {
    const b = spec(input);
    const ctl = controller(input);
    const recorded = await deps.ledger.getOverlayDevice(input.nodeId);
    if (!recorded)
      throw new ToolError(
        'OverlayDeviceTimeout',
        `node ${input.nodeId} has no Bowtie device in the ledger (step 2 has not run)`,
        'bowtie',
      );
    const deadline = stepDeadline(input.timeouts.gatePeerHealth, Date.now());
    let last: BowtieDevice | undefined;
    const device = await waitFor(
      deadline,
      'waiting for the controller to see the device',
      async () => {
        last = await ctl.getDevice(recorded.deviceId);
        if (!last)
          throw new ControllerError(
            'OverlayRejected',
            `device of ${input.nodeId} is gone from the controller (deleted by someone else?)`,
          );
        if (last.state === 'rejected')
          throw new ControllerError('OverlayRejected', `device "${last.name}" was rejected on the controller`);
        const age = ageSeconds(last.last_seen);
        return last.state === 'accepted' && age !== null && age <= b.seenWithinSeconds ? { d: last, age } : null;
      },
      () =>
        new ToolError(
          'OverlayDeviceTimeout',
          `device "${last?.name}" is ${last?.state}, last seen ${last?.last_seen || 'never'}: not accepted and seen within ${b.seenWithinSeconds} s`,
          'bowtie',
        ),
    );
    const probe = await probeThroughTunnel(
      node(input),
      { address: input.spire.serverAddress, port: input.spire.serverPort },
      deadline,
      deps.signal(),
    );
    return {
      hubs: [],
      device: { id: device.d.id, state: device.d.state, lastSeen: device.d.last_seen, lastSeenAgeSeconds: device.age },
      probe,
    };
  }

  return { installOverlay, undoInstallOverlay, issueOverlayKey, undoIssueOverlayKey, gatePeerHealth };
}

/** Seconds since a last_seen stamp (ISO 8601 or epoch seconds; the format is *unconfirmed*), or null when unreadable. */
export function ageSeconds(lastSeen: string | undefined, now = Date.now()): number | null {
  if (!lastSeen) return null;
  const ms = /^\d+(\.\d+)?$/.test(lastSeen) ? Number(lastSeen) * 1000 : Date.parse(lastSeen);
  return Number.isFinite(ms) ? Math.max(0, Math.round((now - ms) / 1000)) : null;
}
