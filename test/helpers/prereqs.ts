/** Integration tests need root and the pinned tools: say so loudly instead of skipping. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TOOLS_BIN } from '../../activities/host/exec.js';

export function requireRealComponents(tools: string[] = []): void {
  if (process.getuid?.() !== 0) {
    throw new Error('integration tests need root (network namespaces, WireGuard, setuid workloads)');
  }
  for (const t of tools) {
    if (!existsSync(path.join(TOOLS_BIN, t)))
      throw new Error(`${t} is missing from ${TOOLS_BIN}: run "npm run tools" first`);
  }
  for (const t of ['/usr/bin/wg', '/usr/bin/wireguard-go', '/usr/bin/curl']) {
    if (!existsSync(t)) throw new Error(`${t} is missing: run "npm run tools" first`);
  }
}
