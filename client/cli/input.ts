/**
 * Reading and validating a provisioning input file (or stdin) before anything
 * reaches Temporal: a bad file exits 2 naming each bad field, and starts nothing.
 */
import { readFile } from 'node:fs/promises';
import { ApplicationFailure } from '@temporalio/common';
import type { ProvisionInput } from '../../common/input.js';
import { validateInput } from '../../workflows/failures.js';
import { InvalidInputError, validateProvisionInput } from '../provision.js';
import { CliError, splitFieldLines } from './errors.js';
import { EXIT } from './exit-codes.js';

/** Read JSON from `path` ('-' = stdin). Unreadable or malformed: CliError(2). */
export async function readJsonInput(path: string, stdin: () => Promise<string>): Promise<unknown> {
  const name = path === '-' ? 'stdin' : path;
  let text: string;
  try {
    text = path === '-' ? await stdin() : await readFile(path, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new CliError(EXIT.INVALID, `cannot read ${name} (${why}): nothing was started`, { code: 'INVALID_INPUT' });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CliError(EXIT.INVALID, `${name} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { code: 'INVALID_INPUT' });
  }
}

/**
 * Validate like the workflow does: the shared schema (client/provision.ts) and
 * then the workflow's own cross-field rules, so the CLI refuses exactly what
 * the run would refuse. Throws InvalidInputError / CliError(2) naming each field.
 */
export function validateForStart(raw: unknown, source: string): ProvisionInput {
  let input: ProvisionInput;
  try {
    input = validateProvisionInput(raw);
  } catch (err) {
    if (err instanceof InvalidInputError) {
      throw new CliError(EXIT.INVALID, `invalid provisioning input in ${source}: nothing was started`, { code: 'INVALID_INPUT', fields: splitFieldLines(err.fields) });
    }
    throw err;
  }
  try {
    validateInput(raw);
  } catch (err) {
    const issues = err instanceof ApplicationFailure ? ((err.details?.[0] as { issues?: string[] } | undefined)?.issues ?? [err.message]) : [String(err)];
    throw new CliError(EXIT.INVALID, `invalid provisioning input in ${source}: nothing was started`, { code: 'INVALID_INPUT', fields: splitFieldLines(issues) });
  }
  return input;
}
