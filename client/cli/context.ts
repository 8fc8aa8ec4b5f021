/** What every command gets: its parsed line, config, output and a lazy Temporal connection. */
import { canonicalize } from './json.js';
import type { ParsedCommand, Flags } from './args.js';
import type { CliConfig } from './config.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import type { Io } from './render.js';
import type { Temporal } from './runs.js';

export interface Context {
  cmd: ParsedCommand;
  flags: Flags;
  config: CliConfig;
  io: Io;
  /** Connect on first use (exit 6 when Temporal cannot be reached). */
  temporal(): Promise<Temporal>;
  stdin(): Promise<string>;
}

/**
 * Print a command's result: with --json one document on stdout carrying `ok`
 * and `exitCode`; otherwise the human lines.
 */
export function emit(ctx: Context, exitCode: ExitCode, json: Record<string, unknown>, human: string[]): ExitCode {
  if (ctx.flags.json)
    ctx.io.out(JSON.stringify({ ok: exitCode === EXIT.OK, exitCode, command: ctx.cmd.command, ...json }, null, 2));
  else for (const l of human) ctx.io.out(l);
  return exitCode;
}

/** Progress and notes for people: stderr, and never in --json mode's stdout. */
export function note(ctx: Context, line: string): void {
  ctx.io.err(line);
}

/** Same JSON value (key order ignored). */
export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonicalize(a)) === JSON.stringify(canonicalize(b));
}

/** --timeout in ms, or undefined. */
export function timeoutMs(flags: Flags): number | undefined {
  return flags.timeout === undefined ? undefined : flags.timeout * 1000;
}
