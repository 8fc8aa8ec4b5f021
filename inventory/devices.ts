/**
 * The `overlay_devices` table: a node's device on a managed overlay (Bowtie),
 * the id the controller knows it by and its public key. The private key stays
 * on the node, with the client.
 */
import { z } from 'zod';
import { NodeId, WgPublicKey } from '../common/names.js';
import type { Db } from './db.js';
import { Opaque, check } from './fields.js';

export interface OverlayDevice {
  nodeId: string;
  driver: 'bowtie';
  deviceId: string;
  publicKey: string;
  controllerUrl: string;
}

const OverlayDeviceSchema = z.object({
  nodeId: NodeId,
  driver: z.literal('bowtie'),
  deviceId: Opaque,
  publicKey: WgPublicKey,
  controllerUrl: z.string().min(1).max(2048),
});

/** Record (or replace) the node's device on a managed overlay. */
export async function recordOverlayDevice(db: Db, device: OverlayDevice): Promise<OverlayDevice> {
  const d = check(OverlayDeviceSchema, 'device', device);
  await db.query(
    `INSERT INTO overlay_devices (node_id, driver, device_id, public_key, controller_url) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (node_id) DO UPDATE SET driver = EXCLUDED.driver, device_id = EXCLUDED.device_id,
       public_key = EXCLUDED.public_key, controller_url = EXCLUDED.controller_url, recorded_at = now()`,
    [d.nodeId, d.driver, d.deviceId, d.publicKey, d.controllerUrl],
  );
  return d;
}

export async function getOverlayDevice(db: Db, nodeId: string): Promise<OverlayDevice | null> {
  const id = check(NodeId, 'nodeId', nodeId);
  const { rows } = await db.query<{ driver: 'bowtie'; device_id: string; public_key: string; controller_url: string }>(
    'SELECT driver, device_id, public_key, controller_url FROM overlay_devices WHERE node_id = $1',
    [id],
  );
  const r = rows[0];
  return r
    ? { nodeId: id, driver: r.driver, deviceId: r.device_id, publicKey: r.public_key, controllerUrl: r.controller_url }
    : null;
}

/** Forget the node's device. True when it had one. */
export async function removeOverlayDevice(db: Db, nodeId: string): Promise<boolean> {
  const id = check(NodeId, 'nodeId', nodeId);
  return ((await db.query('DELETE FROM overlay_devices WHERE node_id = $1', [id])).rowCount ?? 0) > 0;
}
