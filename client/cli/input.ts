/**
 * Reading and validating a provisioning input file (or stdin) before anything
 * reaches Temporal: a bad file exits 2 naming each bad field, and starts nothing.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { ProvisionInput } from '../../common/input.js';
import type { CheckOptions } from '../../common/validate.js';
import { InvalidInputError, validateProvisionInput } from '../provision.js';
import { CliError, splitFieldLines } from './errors.js';
import { EXIT } from './exit-codes.js';

/** The largest input file (or stdin) the CLI reads: a fleet of 10000 nodes fits with room to spare. */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;

/**
 * Read JSON from `path` ('-' = stdin). Only a regular file up to MAX_INPUT_BYTES
 * is read (a FIFO would block, /dev/zero would never end), and neither an error
 * nor anything else ever echoes the content: the path may lead somewhere secret.
 * Unreadable or malformed: CliError(2).
 */
export async function readJsonInput(path: string, stdin: () => Promise<string>): Promise<unknown> {
  const name = path === '-' ? 'stdin' : path;
  const text = path === '-' ? await readStdinInput(stdin) : await readInputFile(path);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CliError(EXIT.INVALID, `${name} is not valid JSON${jsonPosition(err, text)}: nothing was started`, {
      code: 'INVALID_INPUT',
    });
  }
}

async function readInputFile(path: string): Promise<string> {
  const refuse = (why: string) =>
    new CliError(EXIT.INVALID, `cannot read ${path} (${why}): nothing was started`, { code: 'INVALID_INPUT' });
  let file;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer before we can look at what it is.
    file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw refuse((err as NodeJS.ErrnoException).code ?? 'open failed');
  }
  try {
    const st = await file.stat();
    if (!st.isFile()) throw refuse('not a regular file');
    if (st.size > MAX_INPUT_BYTES) throw refuse(`larger than ${MAX_INPUT_BYTES} bytes`);
    const buf = Buffer.alloc(st.size + 1);
    const { bytesRead } = await file.read(buf, 0, buf.length, 0);
    // It grew while we read (it was appended to): refuse rather than read without end.
    if (bytesRead > st.size) throw refuse('changed while being read');
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw refuse((err as NodeJS.ErrnoException).code ?? 'read failed');
  } finally {
    await file.close();
  }
}

async function readStdinInput(stdin: () => Promise<string>): Promise<string> {
  let text: string;
  try {
    text = await stdin();
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new CliError(EXIT.INVALID, `cannot read stdin (${why}): nothing was started`, { code: 'INVALID_INPUT' });
  }
  if (Buffer.byteLength(text) > MAX_INPUT_BYTES) {
    throw new CliError(EXIT.INVALID, `cannot read stdin (larger than ${MAX_INPUT_BYTES} bytes): nothing was started`, {
      code: 'INVALID_INPUT',
    });
  }
  return text;
}

/** " at line L, column C" from a JSON.parse error, whose own message quotes the text. */
function jsonPosition(err: unknown, text: string): string {
  const m = /position (\d+)/.exec(err instanceof Error ? err.message : '');
  if (!m) return text.trim() === '' ? ' (it is empty)' : '';
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  return ` at line ${line}, column ${before.length - before.lastIndexOf('\n')}`;
}

/**
 * Validate exactly as the workflow will (common/validate.ts, through the
 * library client), so the CLI refuses what the run would refuse.
 * Throws CliError(2) naming each field.
 */
export function validateForStart(raw: unknown, source: string, opts: CheckOptions = {}): ProvisionInput {
  try {
    return validateProvisionInput(raw, opts);
  } catch (err) {
    if (err instanceof InvalidInputError) {
      throw new CliError(EXIT.INVALID, `invalid provisioning input in ${source}: nothing was started`, {
        code: 'INVALID_INPUT',
        fields: splitFieldLines(err.fields),
      });
    }
    throw err;
  }
}
