// Every export here is registered as a workflow type by the worker: workflows only.
export { provisionNode } from './provision-node.js';
export { decommissionNode } from './decommission-node.js';
export { provisionFleet } from './provision-fleet.js';
export { rotateOverlayKey } from './rotate-overlay-key.js';
export { maintainNode } from './maintain-node.js';
export { maintainFleet } from './maintain-fleet.js';
export { checkHealth } from './check-health.js';
