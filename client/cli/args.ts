/**
 * nodeboot's command line: the usage text, and argv parsed (node:util
 * parseArgs) and validated (zod) into one typed command. A usage mistake is a
 * CliError with exit code 2 naming the flag.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';
import { NodeId } from '../../common/names.js';
import { STEPS } from '../../common/steps.js';
import { CONFIG_FLAGS, type ConfigFlag } from './config.js';
import { CliError } from './errors.js';
import { EXIT, EXIT_CODE_HELP } from './exit-codes.js';

export const USAGE = `nodeboot: bootstrap machines into the WireGuard + SPIFFE/SPIRE fabric through Temporal

usage: nodeboot <command> [args] [flags]

commands:
  start <input.json|->     validate the input, then start provisioning the node (workflow provision/<nodeId>).
                           Idempotent: a node already provisioning, held or provisioned is attached to, never
                           started twice. A node whose last run failed gets a new run (with this input).
                           --wait follows the run to its end (or to a hold) and exits with its outcome.
  status <node>            state, current step, per-step evidence, last failure with its type and a hint
  watch <node>             live step-by-step progress until the run ends or is held (plain lines when
                           stdout is not a terminal; --json: one JSON object per change)
  list                     runs by --segment, --state, --step, --failed-step, --error-type, --node (visibility)
  rerun <node>             a new run for a node whose last run failed, was cancelled, terminated or is held,
                           with the last run's input (or --input fixed.json, same nodeId). Finished steps are
                           not redone: every step first finds what exists (the interface, the key, the overlay
                           address, the peers, the agent, the entries) and finishes from there.
                           A HELD run is terminated WITHOUT compensation first, so what its finished steps built
                           stays in place for the new run to adopt (that is the point of a rerun; use
                           \`compensate\` to undo instead). A run in progress is refused (exit 7): watch or cancel it.
                           A provisioned node is refused too: decommission it first.
  approve <node>           held run: retry the failed step and continue (same as \`retry\`)
  retry <node>             held run: retry the failed step and continue
  compensate <node>        held run: undo every finished step, in reverse, and fail
  cancel <node>            cancel the run; it undoes what it did (compensates) and ends cancelled
  decommission <node>      remove the node from the fabric (decommissionNode with its last input, or --input);
                           an open provisioning run is cancelled first and its compensation awaited
  rotate <node>            a new WireGuard key for a provisioned node without an outage (workflow rotate/<nodeId>,
                           with its last input or --input): new key made on the node, hubs get the new peer, the
                           node switches, fresh handshakes and the probe are verified, then the old peer goes.
                           Fails back to the old key (tunnel verified) when the new one does not handshake within
                           --handshake-timeout SEC (default 30). --wait: 0 rotated, 3 rolled back, 9 rollback failed
  maintain <node>          one check-and-repair of a provisioned node now (workflow maintain/<nodeId>, with its
                           last provisioning input or --input): checks every link (interface, key, hub peers,
                           handshakes, probe, agent, entries, workloads) and re-runs only the steps that own the
                           broken ones. It holds (exit 4) on a security finding or a failed repair, never re-keys.
                           --wait: exit 0 when the node ends healthy, 11 when degraded or broken
  maintain schedule <fleet> --every 5m [--segment S] [--input fleet.json] [--max-repairs K] [--max-broken-percent X]
                           create or update the Temporal Schedule maintain-fleet-<fleet>[-<segment>]: every
                           interval, maintainFleet checks the fleet's provisioned nodes and repairs the broken
                           ones, at most K at once; a shared dependency down, or more than X % broken: it repairs
                           nothing and holds. A healthy node whose overlay key is older than its
                           overlay.maxKeyAgeDays gets a key rotation (rotate/<node>), within the same K; a
                           rolled-back rotation is reported, a failed rollback holds.
                           The fleet file defaults to the input of run fleet/<fleet>.
                           --delete removes the schedule; --list (no fleet) lists them
  health <node>            read-only check of every link now (on the worker): key age, SVID expiries, handshake
                           age, each broken link and the step that owns it. Exit 0 only when every link is ok, 11 if not
  history <node>           the node's event log from the inventory ledger (DATABASE_URL)
  fleet start <fleet.json|->  validate the fleet and every node's input, then roll it out (workflow
                           fleet/<fleetId>: child provision/<nodeId> runs through a window, a failure budget and
                           a circuit breaker). Attaches while it runs; a finished fleet started again skips
                           provisioned nodes and reruns failed ones. --wait follows it to the end.
  fleet status <fleet>     counts by state, failures by type, budget, breaker, latest failures
  fleet watch <fleet>      a line per change until the rollout ends (--json: one object per change)
  fleet health <fleet>     \`health\` for every node of the fleet (--segment S: one segment; --input fleet.json)

flags (every command):
  --json                   machine output: one JSON document on stdout (watch: one object per line),
                           errors too ({"ok": false, "exitCode": N, "error": {...}})
  --address host:port      TEMPORAL_ADDRESS       (default 127.0.0.1:7233)
  --namespace NAME         TEMPORAL_NAMESPACE     (default "default")
  --task-queue NAME        TEMPORAL_TASK_QUEUE    (default "node-bootstrap")
  --tls-cert PATH          TEMPORAL_TLS_CERT      mTLS client certificate (with --tls-key)
  --tls-key PATH           TEMPORAL_TLS_KEY
  --tls-ca PATH            TEMPORAL_TLS_CA        CA to verify the server with
  --tls-server-name NAME   TEMPORAL_TLS_SERVER_NAME
                           TEMPORAL_TLS=true|false  force TLS on or off
                           TEMPORAL_API_KEY       API key (environment only; implies TLS)
  --connect-timeout SEC    NODEBOOT_CONNECT_TIMEOUT (default 10): then exit 6
                           DATABASE_URL           the inventory ledger (history; environment only)
  -h, --help

flags (some commands):
  --wait                   start, rerun, repair, maintain, approve, retry, compensate, cancel, decommission, rotate: follow the run to its end
  --timeout SEC            with --wait / watch: stop following after SEC seconds (exit 8 if still running)
  --input FILE|-           rerun, repair, maintain, decommission, rotate: use this input instead of the last run's
  --run RUN_ID             status, history: a specific run instead of the latest
  --interval MS            watch: poll interval (default 500)
  --segment S --state running|held|succeeded|failed|cancelled|terminated|timed-out|open|closed
  --step STEP (of a run past timeouts.reportStepAfter, or ended at) --failed-step STEP --error-type TYPE --node NODE
  --type provision|decommission|any --limit N                                   (list)

${EXIT_CODE_HELP}`;

/**
 * Every command: what its argument is (a node id, a file, nothing) and the
 * flags it takes beside the common ones. The order is the order of the help.
 */
const COMMAND_SPECS = {
  start: { target: 'file', flags: ['wait', 'timeout'] },
  status: { target: 'node', flags: ['run'] },
  watch: { target: 'node', flags: ['interval', 'timeout'] },
  list: { target: 'none', flags: ['segment', 'state', 'step', 'failed-step', 'error-type', 'node', 'type', 'limit'] },
  rerun: { target: 'node', flags: ['input', 'wait', 'timeout'] },
  repair: { target: 'node', flags: ['input', 'wait', 'timeout'] },
  approve: { target: 'node', flags: ['wait', 'timeout'] },
  retry: { target: 'node', flags: ['wait', 'timeout'] },
  compensate: { target: 'node', flags: ['wait', 'timeout'] },
  cancel: { target: 'node', flags: ['wait', 'timeout'] },
  decommission: { target: 'node', flags: ['input', 'wait', 'timeout'] },
  rotate: { target: 'node', flags: ['input', 'wait', 'timeout', 'handshake-timeout'] },
  maintain: {
    target: 'node',
    flags: ['input', 'wait', 'timeout', 'every', 'segment', 'delete', 'list', 'max-repairs', 'max-broken-percent'],
  },
  health: { target: 'node', flags: ['input', 'timeout'] },
  history: { target: 'node', flags: ['run', 'limit'] },
  fleet: { target: 'subcommand', flags: ['wait', 'timeout', 'interval', 'input', 'segment'] },
  help: { target: 'none', flags: [] },
} as const satisfies Record<string, { target: 'node' | 'file' | 'subcommand' | 'none'; flags: readonly string[] }>;
export type CommandName = keyof typeof COMMAND_SPECS;
const COMMANDS = Object.keys(COMMAND_SPECS) as CommandName[];
export const FLEET_COMMANDS = ['start', 'status', 'watch', 'health'] as const;
export type FleetCommand = (typeof FLEET_COMMANDS)[number];

const COMMON_FLAGS = ['json', 'help', 'debug', ...(Object.keys(CONFIG_FLAGS) as ConfigFlag[])];
/** Flags only `maintain schedule` takes. */
const SCHEDULE_FLAGS = ['every', 'delete', 'list', 'max-repairs', 'max-broken-percent', 'segment'];

const OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  debug: { type: 'boolean' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  interval: { type: 'string' },
  input: { type: 'string' },
  run: { type: 'string' },
  segment: { type: 'string' },
  state: { type: 'string' },
  step: { type: 'string' },
  'failed-step': { type: 'string' },
  'error-type': { type: 'string' },
  node: { type: 'string' },
  type: { type: 'string' },
  limit: { type: 'string' },
  'handshake-timeout': { type: 'string' },
  every: { type: 'string' },
  delete: { type: 'boolean' },
  list: { type: 'boolean' },
  'max-repairs': { type: 'string' },
  'max-broken-percent': { type: 'string' },
  // config (CONFIG_FLAGS)
  address: { type: 'string' },
  namespace: { type: 'string' },
  'task-queue': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-server-name': { type: 'string' },
  'connect-timeout': { type: 'string' },
  // Removed (a password in argv is readable by every user through ps); parsed only to say so.
  'database-url': { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const LIST_STATES = [
  'running',
  'held',
  'succeeded',
  'failed',
  'cancelled',
  'terminated',
  'timed-out',
  'open',
  'closed',
] as const;
export type ListState = (typeof LIST_STATES)[number];

const Label = z
  .string()
  .max(64)
  .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, 'must be lowercase letters, digits and inner hyphens only');
const Seconds = z.coerce
  .number()
  .positive('must be a positive number of seconds')
  .max(7 * 86_400);

const Flags = z.object({
  json: z.boolean().default(false),
  help: z.boolean().default(false),
  debug: z.boolean().default(false),
  wait: z.boolean().default(false),
  timeout: Seconds.optional(),
  interval: z.coerce.number().int().min(100, 'must be at least 100 ms').max(60_000).default(500),
  input: z.string().min(1).max(4096).optional(),
  run: z
    .string()
    .regex(/^[A-Za-z0-9-]{1,64}$/, 'must be a run id')
    .optional(),
  segment: Label.optional(),
  state: z.enum(LIST_STATES).optional(),
  step: z.enum(STEPS).optional(),
  'failed-step': z.enum(STEPS).optional(),
  'error-type': z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9]{0,63}$/, 'must be a failure type such as "ToolMissing"')
    .optional(),
  node: NodeId.optional(),
  type: z.enum(['provision', 'decommission', 'any']).default('provision'),
  limit: z.coerce.number().int().min(1).max(10_000).optional(),
  'handshake-timeout': z.coerce
    .number()
    .int('must be a whole number of seconds')
    .min(2, 'must be at least 2 seconds')
    .max(600, 'must be at most 600 seconds')
    .optional(),
  every: z
    .string()
    .regex(/^[1-9][0-9]*(s|m|h|d)$/, 'must be a duration such as "5m", "1h" or "1d"')
    .optional(),
  delete: z.boolean().default(false),
  list: z.boolean().default(false),
  'max-repairs': z.coerce.number().int().min(1, 'must be at least 1').max(100).optional(),
  'max-broken-percent': z.coerce.number().min(0).max(100, 'must be a percentage (0-100)').optional(),
});
export type Flags = z.output<typeof Flags>;

export interface ParsedCommand {
  command: CommandName;
  /** The node id (node commands), the input path (start, fleet start) or the fleet id (fleet status/watch). */
  target: string | undefined;
  /** fleet's subcommand, or `schedule` (maintain schedule). */
  sub?: FleetCommand | 'schedule';
  flags: Flags;
  config: Partial<Record<ConfigFlag, string>>;
}

/** Parse argv; usage mistakes throw CliError(2). `--help` anywhere gives command 'help'. */
export function parseCommandLine(argv: string[]): ParsedCommand {
  const parse = () => parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (err) {
    throw usage(err instanceof Error ? err.message.replace(/\. To specify a positional.*$/s, '') : String(err));
  }
  const { values, positionals } = parsed;
  if (values['database-url'] !== undefined) {
    // Never echo the value: it holds the database password.
    throw new CliError(
      EXIT.INVALID,
      '--database-url is not accepted: a password on the command line is visible to every user (ps); set DATABASE_URL in the environment instead',
      {
        code: 'USAGE',
        fields: [{ path: '--database-url', message: 'use the DATABASE_URL environment variable' }],
        suggestion: 'DATABASE_URL=postgres://... nodeboot history <node>',
      },
    );
  }
  const wantsJson = values.json === true;
  if (values.help || positionals[0] === 'help')
    return { command: 'help', target: undefined, flags: Flags.parse({ json: wantsJson, help: true }), config: {} };
  const [name] = positionals;
  if (!name) throw usage('a command is required');
  if (!(COMMANDS as readonly string[]).includes(name)) throw usage(`unknown command "${name}"`);
  const command = name as CommandName;
  let sub: FleetCommand | 'schedule' | undefined;
  // `maintain schedule ...`: fleet maintenance (so no node can be maintained under the name "schedule").
  if (command === 'maintain' && positionals[1] === 'schedule') sub = 'schedule';
  if (command === 'fleet') {
    const s = positionals[1];
    if (!s || !(FLEET_COMMANDS as readonly string[]).includes(s))
      throw usage(`fleet needs a subcommand: ${FLEET_COMMANDS.join(', ')}`);
    sub = s as FleetCommand;
  }
  const [target, ...extra] = positionals.slice(sub ? 2 : 1);

  const allowed = new Set([...COMMON_FLAGS, ...COMMAND_SPECS[command].flags]);
  if (command === 'maintain') for (const f of SCHEDULE_FLAGS) if (sub !== 'schedule') allowed.delete(f);
  if (sub === 'schedule') for (const f of ['wait', 'timeout']) allowed.delete(f);
  if (command === 'fleet' && sub !== 'health') for (const f of ['input', 'segment']) allowed.delete(f);
  const used = Object.keys(values).filter((k) => values[k as keyof typeof values] !== undefined);
  const stray = used.filter((k) => !allowed.has(k));
  if (stray.length) throw usage(`${stray.map((s) => `--${s}`).join(', ')} does not apply to "${command}"`);

  if (command === 'list') {
    if (target !== undefined) throw usage('list takes no positional argument (filter with --node, --segment, ...)');
  } else if (sub === 'schedule') {
    if (values.list) {
      if (target !== undefined) throw usage('maintain schedule --list takes no fleet id');
    } else {
      if (!target) throw usage('maintain schedule needs a fleet id (or --list)');
      if (!NodeId.safeParse(target).success) {
        throw new CliError(EXIT.INVALID, `invalid fleet id "${target}"`, {
          code: 'USAGE',
          fields: [{ path: 'fleet', message: 'must be lowercase letters, digits and inner hyphens only' }],
        });
      }
      if (!values.delete && values.every === undefined)
        throw usage('maintain schedule needs --every (e.g. --every 5m), or --delete / --list');
    }
  } else if (!target) {
    if (command === 'fleet')
      throw usage(
        sub === 'start' ? 'fleet start needs a fleet file (or - for stdin)' : `fleet ${sub} needs a fleet id`,
      );
    throw usage(command === 'start' ? 'start needs an input file (or - for stdin)' : `${command} needs a node id`);
  }
  if (command === 'fleet' && sub !== 'start' && !NodeId.safeParse(target).success) {
    throw new CliError(EXIT.INVALID, `invalid fleet id "${target}"`, {
      code: 'USAGE',
      fields: [{ path: 'fleet', message: 'must be lowercase letters, digits and inner hyphens only' }],
    });
  }
  if (extra.length) throw usage(`unexpected argument "${extra[0]}"`);
  if (target && COMMAND_SPECS[command].target === 'node' && sub !== 'schedule') {
    const r = NodeId.safeParse(target);
    if (!r.success) {
      throw new CliError(EXIT.INVALID, `invalid node id "${target}"`, {
        code: 'USAGE',
        fields: [{ path: 'node', message: r.error.issues[0]?.message ?? 'is invalid' }],
      });
    }
  }

  const config: Partial<Record<ConfigFlag, string>> = {};
  for (const f of Object.keys(CONFIG_FLAGS) as ConfigFlag[]) {
    const v = values[f];
    if (typeof v === 'string') config[f] = v;
  }
  const flagValues: Record<string, unknown> = {};
  for (const k of Object.keys(Flags.shape))
    if (values[k as keyof typeof values] !== undefined) flagValues[k] = values[k as keyof typeof values];
  const r = Flags.safeParse(flagValues);
  if (!r.success) {
    throw new CliError(EXIT.INVALID, 'invalid flags', {
      code: 'USAGE',
      fields: r.error.issues.map((i) => ({ path: `--${String(i.path[0])}`, message: i.message })),
    });
  }
  return { command, target, ...(sub ? { sub } : {}), flags: r.data, config };
}

function usage(message: string): CliError {
  return new CliError(EXIT.INVALID, message, { code: 'USAGE', suggestion: 'nodeboot --help' });
}
