/**
 * The provisionNode input: one zod schema shared by the workflow, the worker,
 * the nodeboot client and anyone typing JSON into `temporal workflow start`.
 * Plain JSON only: no codec, no Dates, no secrets (there is no field for one).
 * Imported by workflows: no Node built-ins here.
 */
import { z } from 'zod';
import { shared } from './schema-cache.js';
import {
  IfName,
  Ipv4,
  Ipv4Cidr,
  Ipv4Endpoint,
  Label,
  NetnsName,
  NodeId,
  SafePath,
  SpiffeId,
  SpiffePath,
  TrustDomain,
  UnixUid,
} from './names.js';

/** An SSH target host: an IPv4 address or a DNS name (never something `ssh` could read as an option). */
export const SshHostName = shared('input:SshHostName', () =>
  z.union(
    [
      Ipv4,
      z
        .string()
        .max(253)
        .regex(
          /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i,
          'must be a DNS name',
        ),
    ],
    { error: 'must be an IPv4 address or a DNS name' },
  ),
);

/** A remote login name (POSIX portable user name). */
export const SshUser = shared('input:SshUser', () =>
  z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a user name such as "root" or "deploy"'),
);

/**
 * A host reached over SSH. The host key is pinned: `knownHostsFile` holds the
 * key(s) the host must present; an unknown or changed key is a security failure.
 */
export const SshHostSpec = shared('input:SshHostSpec', () =>
  z
    .object({
      kind: z.literal('ssh'),
      host: SshHostName,
      port: z.number().int().min(1).max(65535).default(22),
      user: SshUser.default('root'),
      /** The worker's private key for this host (a file path on the worker; never the key itself). */
      identityFile: SafePath,
      /** known_hosts file pinning the host's key (on the worker). */
      knownHostsFile: SafePath,
      connectTimeoutSeconds: z.number().int().min(1).max(120).default(10),
    })
    .strict(),
);
export type SshHostSpec = z.infer<typeof SshHostSpec>;

export const HostSpec = shared('input:HostSpec', () =>
  z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('local') }).strict(),
    z.object({ kind: z.literal('netns'), netns: NetnsName }).strict(),
    SshHostSpec,
  ]),
);
export type HostSpec = z.infer<typeof HostSpec>;

export const HubSpec = shared('input:HubSpec', () =>
  z
    .object({
      name: Label,
      /** Where hub-side commands run (adding/removing this node as a peer). */
      host: HostSpec,
      /** The hub's WireGuard interface on the hub host. */
      interface: IfName,
      /** Underlay endpoint nodes dial, "ip:port". */
      endpoint: Ipv4Endpoint,
      /** The hub's own address inside the overlay. */
      overlayIp: Ipv4,
    })
    .strict(),
);
export type HubSpec = z.infer<typeof HubSpec>;

/**
 * The name of a worker environment variable a credential is read from (never
 * the credential). Only names under this prefix: an input must not be able to
 * make the worker read DATABASE_URL or TEMPORAL_API_KEY and send it somewhere.
 */
export const CREDENTIAL_ENV_PREFIX = 'NODEBOOT_CRED_';
export const CredentialEnvName = shared('input:CredentialEnvName', () =>
  z
    .string()
    .regex(
      /^NODEBOOT_CRED_[A-Z0-9_]{1,100}$/,
      `must name a worker environment variable starting with "${CREDENTIAL_ENV_PREFIX}", such as "NODEBOOT_CRED_BOWTIE_KEY_ID" (the worker reads credentials from no others)`,
    ),
);

/** An https URL without credentials in it (credentials and packages never travel in clear text). */
const HttpsUrl = shared('input:HttpsUrl', () =>
  z
    .string()
    .max(2048)
    .regex(
      /^https:\/\/[^\s/@]+(?::\d+)?(?:\/[^\s]*)?$/,
      'must be an https URL such as "https://ctl1.example.net" (no credentials in it; http is refused)',
    ),
);

const Sha256 = shared('input:Sha256', () => z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters'));

/**
 * The Bowtie overlay driver (../shared/bowtie-api.md): the Bowtie client on the
 * node makes its own key and tunnels to the controller; we drive the
 * controller's API and the client's local API. Credentials are read by the
 * worker from the environment variables named here.
 */
export const BowtieSpec = shared('input:BowtieSpec', () =>
  z
    .object({
      /** The controller whose API approves devices and holds the policy, e.g. "https://ctl1.example.net". */
      controllerUrl: HttpsUrl,
      /** `entrypoint` in the client's config.toml (default: [controllerUrl]). */
      entrypoints: z.array(HttpsUrl).min(1).max(16).optional(),
      auth: z.discriminatedUnion('kind', [
        z.object({ kind: z.literal('apiKey'), keyIdEnv: CredentialEnvName, secretEnv: CredentialEnvName }).strict(),
        z
          .object({
            kind: z.literal('session'),
            emailEnv: CredentialEnvName,
            passwordEnv: CredentialEnvName,
            /** The login body's user field: the public sources disagree (*unconfirmed*). */
            loginField: z.enum(['email', 'email_or_username']).default('email'),
          })
          .strict(),
      ]),
      /** Try the other trailing-slash form of a path once after a 404 (some controller versions need it). */
      trailingSlashFallback: z.boolean().default(true),
      requestTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
      package: z
        .object({
          /** A .deb already on the node (absolute path), or an https URL the worker downloads and copies to the node. */
          source: z.union([SafePath, HttpsUrl], { error: 'must be an absolute path on the node or an https URL' }),
          /** Checked on the node before anything is installed or configured: a package is only ever installed by its digest. */
          sha256: Sha256,
          /** The Debian package name (to check and to uninstall). */
          name: z
            .string()
            .regex(/^[a-z0-9][a-z0-9+.-]+$/, 'must be a Debian package name')
            .default('bowtie-service'),
        })
        .strict(),
      /**
       * Install into this directory tree (dpkg --root) instead of "/", and seed
       * the config there. For nodes that share a filesystem (the lab's network
       * namespaces) or image builds; omit on real machines (apt-get into "/").
       */
      installRoot: SafePath.optional(),
      /** How the device gets approved: after it enrolls (by the id the client reports), or up front by its serial. */
      approval: z.enum(['approve', 'preApprove']).default('approve'),
      /** The device serial the client reports (needed for preApprove; also used to find the device). */
      serial: z
        .string()
        .min(1)
        .max(128)
        .regex(/^[A-Za-z0-9._:-]+$/, 'must be letters, digits and "._:-" only')
        .optional(),
      /** Further config.toml keys, written as given (the documented ones, entrypoint and auth_prompt_strategy, are ours). */
      clientConfig: z
        .record(
          z.string(),
          z.union([z.string().max(1024), z.number(), z.boolean(), z.array(z.string().max(1024)).max(64)]),
        )
        .default({}),
      /** The client's local API port on the node's loopback. */
      localApiPort: z.number().int().min(1).max(65535).default(17133),
      /** The health gate's "recently seen": the controller's last_seen of the device at most this old. */
      seenWithinSeconds: z.number().int().min(5).max(86_400).default(120),
    })
    .strict()
    .superRefine((v, ctx) => {
      if (v.approval === 'preApprove' && !v.serial)
        ctx.addIssue({ code: 'custom', path: ['serial'], message: 'is required when approval is "preApprove"' });
      for (const k of Object.keys(v.clientConfig)) {
        if (k === 'entrypoint' || k === 'auth_prompt_strategy')
          ctx.addIssue({ code: 'custom', path: ['clientConfig', k], message: 'is set by the driver' });
        else if (!/^[A-Za-z0-9_-]{1,64}$/.test(k))
          ctx.addIssue({
            code: 'custom',
            path: ['clientConfig', k],
            message: 'must be a bare TOML key (letters, digits, "_", "-")',
          });
      }
    }),
);
export type BowtieSpec = z.infer<typeof BowtieSpec>;

export const OverlaySpec = shared('input:OverlaySpec', () =>
  z
    .object({
      /** "wireguard": we drive wireguard-tools and the hubs. "bowtie": the Bowtie client and controller do. */
      driver: z.enum(['wireguard', 'bowtie']).default('wireguard'),
      /** The segment's overlay CIDR: the ledger allocates node addresses from it (wireguard) or records the address the controller assigned in it (bowtie). */
      cidr: Ipv4Cidr,
      /** WireGuard hubs (wireguard driver; at least one). */
      hubs: z.array(HubSpec).default([]),
      /** The node's WireGuard interface name (wireguard driver; default derived from the node id). */
      interface: IfName.optional(),
      listenPort: z.number().int().min(1).max(65535).default(51820),
      persistentKeepaliveSeconds: z.number().int().min(0).max(3600).default(5),
      mtu: z.number().int().min(1280).max(9000).default(1420),
      /** Required for the bowtie driver, refused for wireguard. */
      bowtie: BowtieSpec.optional(),
      /**
       * Rotate the node's WireGuard key once it is older than this many days
       * (rotateOverlayKey, started by a schedule). Unset: only on demand (`nodeboot rotate`).
       */
      maxKeyAgeDays: z.number().int().positive().max(3650).optional(),
    })
    .strict()
    .superRefine((v, ctx) => {
      if (v.driver === 'wireguard') {
        if (v.hubs.length === 0) ctx.addIssue({ code: 'custom', path: ['hubs'], message: 'needs at least one hub' });
        if (v.bowtie) ctx.addIssue({ code: 'custom', path: ['bowtie'], message: 'is only for driver "bowtie"' });
      } else {
        if (!v.bowtie) ctx.addIssue({ code: 'custom', path: ['bowtie'], message: 'is required for driver "bowtie"' });
        if (v.hubs.length > 0)
          ctx.addIssue({
            code: 'custom',
            path: ['hubs'],
            message: 'are for driver "wireguard" (Bowtie controllers are the peers)',
          });
        if (v.interface)
          ctx.addIssue({
            code: 'custom',
            path: ['interface'],
            message: 'is for driver "wireguard" (the Bowtie client names its interface)',
          });
        if (v.maxKeyAgeDays !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['maxKeyAgeDays'],
            message: 'is for driver "wireguard" (the Bowtie client keeps its own key)',
          });
      }
    }),
);
export type OverlaySpec = z.infer<typeof OverlaySpec>;

const JoinTokenAttestor = shared('input:JoinTokenAttestor', () =>
  z
    .object({ type: z.literal('join_token'), tokenTtlSeconds: z.number().int().min(30).max(86_400).default(600) })
    .strict(),
);
/**
 * x509pop: a machine certificate (subject CN = the node id) and its key, files
 * on the NODE (the key owned by root, mode 0600; the worker never reads it).
 */
const X509PopAttestor = shared('input:X509PopAttestor', () =>
  z
    .object({
      type: z.literal('x509pop'),
      certificatePath: SafePath,
      privateKeyPath: SafePath,
      intermediatesPath: SafePath.optional(),
    })
    .strict(),
);
/** sshpop: the node's SSH host key and its host certificate from the SSH CA the server trusts, files on the NODE. */
const SshPopAttestor = shared('input:SshPopAttestor', () =>
  z.object({ type: z.literal('sshpop'), hostKeyPath: SafePath, hostCertPath: SafePath }).strict(),
);
const AwsIidAttestor = shared('input:AwsIidAttestor', () =>
  z
    .object({
      type: z.literal('aws_iid'),
      accountId: z
        .string()
        .regex(/^\d{12}$/, 'must be a 12-digit AWS account id')
        .optional(),
    })
    .strict(),
);
const GcpIitAttestor = shared('input:GcpIitAttestor', () =>
  z
    .object({ type: z.literal('gcp_iit'), projectId: Label.optional(), serviceAccount: z.string().max(255).optional() })
    .strict(),
);
/**
 * tpm_devid: the node's TPM (a device, or a TPM simulator's unix socket) and its DevID: the certificate (subject CN =
 * the node id) and the TPM-wrapped key blobs (TPMT_PUBLIC / TPM2B_PRIVATE bodies), files on the NODE. Hierarchy
 * passwords are not supported: SPIRE takes them in plugin_data, which would put them in the agent's config on disk.
 */
const TpmDevidAttestor = shared('input:TpmDevidAttestor', () =>
  z
    .object({
      type: z.literal('tpm_devid'),
      tpmDevicePath: SafePath,
      devidCertPath: SafePath,
      devidPrivPath: SafePath,
      devidPubPath: SafePath,
    })
    .strict(),
);

export const NodeAttestor = shared('input:NodeAttestor', () =>
  z.discriminatedUnion('type', [
    JoinTokenAttestor,
    X509PopAttestor,
    SshPopAttestor,
    AwsIidAttestor,
    GcpIitAttestor,
    TpmDevidAttestor,
  ]),
);
export type NodeAttestor = z.infer<typeof NodeAttestor>;

export const SpireSpec = shared('input:SpireSpec', () =>
  z
    .object({
      trustDomain: TrustDomain,
      /** The SPIRE server's address inside the overlay (agents dial it through the tunnel). */
      serverAddress: Ipv4,
      serverPort: z.number().int().min(1).max(65535).default(8081),
      /** Where `spire-server` CLI commands run, and its admin socket there. */
      serverHost: HostSpec,
      serverSocketPath: SafePath,
      nodeAttestor: NodeAttestor.default({ type: 'join_token', tokenTtlSeconds: 600 }),
      /**
       * How often the node's agent syncs its entries with the server, in ms (SPIRE's
       * experimental `sync_interval`; its default, 5 s, when absent). Step 6 waits for the
       * entries step 5 made to reach the agent, at its next sync: a shorter interval ends
       * that wait sooner, for a sync RPC per agent per interval on the server.
       */
      agentSyncIntervalMs: z.number().int().min(200).max(3_600_000).optional(),
    })
    .strict(),
);

export const WorkloadSpec = shared('input:WorkloadSpec', () =>
  z
    .object({
      name: Label,
      /** SPIFFE ID path under the trust domain, e.g. "/ns/prod/sa/api". */
      spiffePath: SpiffePath,
      /** Unix uid the workload runs as; becomes the selector unix:uid:<uid>. */
      uid: UnixUid,
      /** Extra selectors ("type:value"), e.g. "unix:gid:1000". */
      selectors: z
        .array(z.string().regex(/^[a-z0-9_-]+:[A-Za-z0-9:._/=-]+$/, 'must look like "unix:gid:1000"'))
        .max(16)
        .default([]),
      /**
       * Program and arguments the workload runs (argument array, not a shell line).
       * It finds the agent through SPIFFE_ENDPOINT_SOCKET. Required for every run
       * started now (common/validate.ts); optional in the schema only so inputs
       * recorded before still parse.
       */
      command: z.array(z.string().max(4096)).min(1, 'needs a program to run').optional(),
      /**
       * Read by nothing. With no `command` it once named the worker's built-in demo
       * workload (serving mTLS on this port); kept so recorded inputs still parse
       * and replay. The lab's demo workload takes its port in `command`.
       */
      port: z.number().int().min(1024).max(65535).optional(),
      /** Read by nothing: the built-in demo workload's callers, kept like `port`. */
      allow: z.array(SpiffeId).max(64).default([]),
      x509TtlSeconds: z
        .number()
        .int()
        .min(60)
        .max(86_400 * 7)
        .default(3600),
      jwtTtlSeconds: z.number().int().min(30).max(86_400).default(300),
    })
    .strict(),
);
export type WorkloadSpec = z.infer<typeof WorkloadSpec>;

const seconds = (def: number) => z.number().int().min(1).max(86_400).default(def);

/** Per-step deadlines (start-to-close) and when a run starts naming its step, in seconds. Inputs, so tests can make them short. */
export const TimeoutsSpec = shared('input:TimeoutsSpec', () =>
  z
    .object({
      installOverlay: seconds(120),
      issueOverlayKey: seconds(60),
      gatePeerHealth: seconds(60),
      startSpireAgent: seconds(120),
      registerEntries: seconds(60),
      launchWorkloads: seconds(120),
      compensation: seconds(120),
      /**
       * Once a run has run this long it names its current step in the BootstrapStep
       * search attribute, and then each step it enters: a run that ends sooner is
       * listed by how it ended, and by the step it failed, was held or was cancelled at.
       */
      reportStepAfter: seconds(10),
    })
    .strict(),
);

export const RetrySpec = shared('input:RetrySpec', () =>
  z
    .object({
      initialIntervalMs: z.number().int().min(10).max(600_000).default(1000),
      maximumIntervalMs: z.number().int().min(10).max(3_600_000).default(30_000),
      maximumAttempts: z.number().int().min(1).max(100).default(5),
    })
    .strict(),
);

export const ProvisionInput = shared('input:ProvisionInput', () =>
  z
    .object({
      nodeId: NodeId,
      segment: Label,
      host: HostSpec,
      /** Where the node keeps its bootstrap state (keys, agent data) on the node. */
      nodeDir: SafePath,
      overlay: OverlaySpec,
      spire: SpireSpec,
      workloads: z.array(WorkloadSpec).max(64).default([]),
      timeouts: TimeoutsSpec.default(TimeoutsSpec.parse({})),
      retry: RetrySpec.default(RetrySpec.parse({})),
      /** What to do when a step fails for good: undo everything, or wait for an operator. */
      onFailure: z.enum(['compensate', 'hold']).default('compensate'),
    })
    .strict()
    .superRefine((v, ctx) => {
      const names = new Set<string>();
      v.workloads.forEach((w, i) => {
        if (names.has(w.name))
          ctx.addIssue({
            code: 'custom',
            path: ['workloads', i, 'name'],
            message: `duplicate workload name "${w.name}"`,
          });
        names.add(w.name);
      });
      const hubNames = new Set<string>();
      v.overlay.hubs.forEach((h, i) => {
        if (hubNames.has(h.name))
          ctx.addIssue({
            code: 'custom',
            path: ['overlay', 'hubs', i, 'name'],
            message: `duplicate hub name "${h.name}"`,
          });
        hubNames.add(h.name);
      });
    }),
);

/** What a caller may send (defaults optional). */
export type ProvisionInputJson = z.input<typeof ProvisionInput>;
/** What the workflow and activities see (defaults applied). */
export type ProvisionInput = z.output<typeof ProvisionInput>;

/** Stable interface name for a node: "nb" + 13 hex chars of a hash of the node id. */
export function defaultInterfaceName(nodeId: string): string {
  // FNV-1a 64-bit, written out so workflows can call it (no node:crypto).
  let h = 0xcbf29ce484222325n;
  for (const ch of nodeId) {
    h ^= BigInt(ch.codePointAt(0)!);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return `nb${h.toString(16).padStart(16, '0').slice(0, 13)}`;
}
