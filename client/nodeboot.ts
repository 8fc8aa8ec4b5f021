#!/usr/bin/env -S node --import tsx
/**
 * nodeboot: the CLI for CI and on-call. `nodeboot --help` lists the commands,
 * flags and exit codes (client/cli/exit-codes.ts); docs/operating.md shows
 * them in use.
 *
 *   nodeboot start --wait --json node.json
 */
import { fileURLToPath } from 'node:url';
import { parseCommandLine, USAGE, type ParsedCommand } from './cli/args.js';
import { decommission } from './cli/commands/decommission.js';
import { fleet } from './cli/commands/fleet.js';
import { history } from './cli/commands/history.js';
import { list } from './cli/commands/list.js';
import { maintain } from './cli/commands/maintain.js';
import { maintainSchedule } from './cli/commands/maintain-schedule.js';
import { health } from './cli/commands/health.js';
import { cancel, decide } from './cli/commands/operate.js';
import { repair } from './cli/commands/repair.js';
import { rerun } from './cli/commands/rerun.js';
import { rotate } from './cli/commands/rotate.js';
import { start } from './cli/commands/start.js';
import { status, watch } from './cli/commands/status.js';
import { loadCliConfig } from './cli/config.js';
import type { Context } from './cli/context.js';
import { handleError } from './cli/errors.js';
import { MAX_INPUT_BYTES } from './cli/input.js';
import { EXIT, type ExitCode } from './cli/exit-codes.js';
import type { Io } from './cli/render.js';
import { connectTemporal, type Temporal } from './cli/runs.js';

const COMMANDS: Record<Exclude<ParsedCommand['command'], 'help'>, (ctx: Context) => Promise<ExitCode>> = {
  start,
  status,
  watch,
  list,
  rerun,
  repair,
  approve: (ctx) => decide(ctx, 'retry'),
  retry: (ctx) => decide(ctx, 'retry'),
  compensate: (ctx) => decide(ctx, 'compensate'),
  cancel,
  decommission,
  rotate,
  maintain: (ctx) => (ctx.cmd.sub === 'schedule' ? maintainSchedule(ctx) : maintain(ctx)),
  health,
  history,
  fleet,
};

export const processIo: Io = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
  write: (stream, text) => (stream === 'out' ? process.stdout : process.stderr).write(text),
  isTTY: (stream) => Boolean((stream === 'out' ? process.stdout : process.stderr).isTTY),
  columns: (stream) => (stream === 'out' ? process.stdout : process.stderr).columns ?? 0,
};

/** Run one command line; returns the exit code. Every error goes through handleError once. */
export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: Io,
  stdin: () => Promise<string> = readStdin,
): Promise<ExitCode> {
  // Known before parsing, so even a usage error comes out as JSON.
  const json = argv.includes('--json');
  const debug = argv.includes('--debug');
  let temporal: Temporal | undefined;
  let address: string | undefined;
  let nodeId: string | undefined;
  try {
    const cmd = parseCommandLine(argv);
    if (cmd.command === 'help') {
      if (cmd.flags.json) io.out(JSON.stringify({ ok: true, exitCode: 0, usage: USAGE }));
      else io.out(USAGE);
      return EXIT.OK;
    }
    const config = loadCliConfig(env, cmd.config);
    address = config.TEMPORAL_ADDRESS;
    nodeId =
      cmd.command === 'start' || cmd.command === 'list' || cmd.command === 'fleet' || cmd.sub === 'schedule'
        ? undefined
        : cmd.target;
    const ctx: Context = {
      cmd,
      flags: cmd.flags,
      config,
      io,
      stdin,
      temporal: async () => (temporal ??= await connectTemporal(config)),
    };
    return await COMMANDS[cmd.command](ctx);
  } catch (err) {
    return handleError(err, { json, debug, ...(address ? { address } : {}), ...(nodeId ? { nodeId } : {}) }, io);
  } finally {
    await temporal?.close().catch(() => undefined);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    // Past the limit the input is refused anyway: stop reading an endless stream.
    if (size > MAX_INPUT_BYTES) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The process entry (this file under tsx, or the package bin client/bin/nodeboot.mjs). */
export function main(argv: string[] = process.argv.slice(2)): void {
  const exit = (code: number) => {
    // Let stdout drain to a pipe; a handle left open (it should not be) cannot hang CI.
    process.exitCode = code;
    setTimeout(() => process.exit(code), 2_000).unref();
  };
  runCli(argv, process.env, processIo).then(exit, (err: unknown) => {
    process.stderr.write(`nodeboot: ${err instanceof Error ? err.message : String(err)}\n`);
    exit(EXIT.ERROR);
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
