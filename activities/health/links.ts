/**
 * Building blocks of a health check: one LinkCheck per link, and a guard that
 * turns a check that could not look (a tool failed) into a broken link with
 * the reason, instead of failing the whole check.
 */
import type { LinkCheck, LinkKind, LinkStatus } from '../../common/health.js';
import type { StepName } from '../../common/steps.js';
import { redactSecrets } from '../../common/errors.js';

export function linkName(kind: LinkKind, name?: string): string {
  return name === undefined ? kind : `${kind}:${name}`;
}

export function link(
  kind: LinkKind,
  name: string | undefined,
  step: StepName,
  status: LinkStatus,
  detail: string,
  evidence: Record<string, unknown> = {},
  security = false,
): LinkCheck {
  return { link: linkName(kind, name), kind, status, step, detail, ...(security ? { security: true } : {}), evidence };
}

/** A link whose check itself failed: broken, and the reason (sanitized) is the detail. */
export async function guarded(
  kind: LinkKind,
  name: string | undefined,
  step: StepName,
  check: () => Promise<LinkCheck>,
): Promise<LinkCheck> {
  try {
    return await check();
  } catch (err) {
    const message = redactSecrets(err instanceof Error ? err.message : String(err));
    const type = (err as { type?: unknown }).type;
    return link(
      kind,
      name,
      step,
      'broken',
      `could not check: ${message}`,
      typeof type === 'string' ? { errorType: type } : {},
    );
  }
}

/** Seconds from now until an ISO 8601 time or epoch-ms (negative when past). */
export function secondsUntil(when: string | number, now = Date.now()): number {
  const ms = typeof when === 'number' ? when : Date.parse(when);
  return Math.round((ms - now) / 1000);
}

/** ok / degraded / broken for a credential that expires in `left` seconds, with `margin` the degraded threshold. */
export function expiryStatus(left: number, margin: number): LinkStatus {
  return left <= 0 ? 'broken' : left < margin ? 'degraded' : 'ok';
}
