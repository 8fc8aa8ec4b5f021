/**
 * join_token: a one-time bearer secret, for bootstrap and the lab. The token is
 * minted here and goes from the server's stdout to the agent's stdin and
 * nowhere else (agent-cli.ts); the agent's ID embeds it. `token generate
 * -spiffeID <alias>` makes the node alias (parent = the agent's ID, one
 * `spiffe_id:` selector), so there is nothing to create after attestation.
 * Not re-attestable: an evicted agent stays out until the node is run again.
 */
import { nodeAliasId } from '../../../common/ids.js';
import { heartbeat } from '../../host/heartbeat.js';
import * as server from '../server-cli.js';
import type { NodeAttestorModule } from './contract.js';

export const joinTokenAttestor: NodeAttestorModule<'join_token'> = {
  type: 'join_token',
  canReattest: false,
  agentId: () => undefined,
  checkCredential: async () => undefined,
  async prepare({ input, spec, server: srv }) {
    const token = await server.tokenGenerate(srv, { spiffeId: nodeAliasId(input), ttlSeconds: spec.tokenTtlSeconds });
    heartbeat('join token minted');
    return { pluginData: {}, joinToken: token, agentId: server.joinTokenAgentId(input.spire.trustDomain, token) };
  },
  alias: () => undefined,
};
