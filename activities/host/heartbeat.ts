/**
 * Heartbeat from inside an activity, and a no-op outside one (the lab and
 * scripts call the same code directly).
 */
import { Context } from '@temporalio/activity';

export function heartbeat(details?: string): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    /* not inside an activity */
  }
}

/** The running activity's cancellation signal, if any. */
export function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}
