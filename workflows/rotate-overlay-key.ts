/**
 * rotateOverlayKey: give a provisioned node a new WireGuard key without an
 * outage. Runs as `rotate/<nodeId>` (common/ids.ts), from `nodeboot rotate`
 * (and, for keys older than overlay.maxKeyAgeDays, from a schedule).
 *
 * The runbook (activities/overlay/wireguard/rotate.ts has the why of each stage):
 *   1 the node makes a new key          (it never leaves the node)
 *   2 every hub gets the new peer       (no route yet: the old tunnel works)
 *   3 routes move, the node switches    (back to back)
 *   4 fresh handshakes + the probe      (within handshakeTimeoutSeconds)
 *   5 old peer removed, ledger updated  (only after 4)
 *
 * Any failure (or a cancellation) before 5 rolls back to the old key and peer
 * and proves the old tunnel again; the run then fails with the reason. Once 4
 * passed the new key carries the tunnel, so 5 is not cancelled; should it fail
 * for good, the rollback settles the node on one key and one peer all the same.
 * Each stage is idempotent and the state a later stage or the rollback needs is
 * in the earlier stages' results, so a worker dying between (or inside) any two
 * stages only means the next worker repeats the one that was running.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { RotationActivities, RotationKeys } from '../activities/types-rotation.js';
import type { Activities } from '../activities/types.js';
import { NON_RETRYABLE_ERROR_TYPES, errorClassOf, redactSecrets } from '../common/errors.js';
import {
  checkRotateRequest,
  type RotateRequest,
  type RotateRequestJson,
  type RotationReceipt,
} from '../common/rotation.js';
import { NodeIdKey, SegmentKey } from '../common/search-attributes.js';
import { describeFailure } from './failures.js';
import { eventRecorder, type RecordEvent } from './events.js';
import { heartbeatTimeoutMs, retryPolicyFor } from './proxies.js';

type Stage = 'prepare' | 'add hub peers' | 'switch' | 'verify' | 'finalize';

/** Rotate the node's overlay key; returns the new fingerprint, or fails with the reason after rolling back. */
export async function rotateOverlayKey(raw: RotateRequestJson): Promise<RotationReceipt> {
  const req = acceptRequest(raw);
  const { input, handshakeTimeoutSeconds } = req;
  const { workflowId, runId } = workflowInfo();
  upsertSearchAttributes([
    { key: NodeIdKey, value: input.nodeId },
    { key: SegmentKey, value: input.segment },
  ]);
  const acts = rotationActivitiesFor(req);
  // The rotation redoes part of step 2's job: its events go under that step (the node's state is untouched).
  const record = eventRecorder(acts.recordEvent, input.nodeId);
  const base = { input, run: { workflowId, runId } };
  await record('issueOverlayKey', 'started', { detail: { rotation: 'started' } });

  let stage: Stage = 'prepare';
  let keys: RotationKeys | null = null;
  let verified;
  try {
    keys = await acts.rotatePrepareKey(base);
    stage = 'add hub peers';
    await acts.rotateAddHubPeers({ ...base, keys });
    stage = 'switch';
    await acts.rotateSwitchKey({ ...base, keys });
    stage = 'verify';
    verified = await acts.rotateVerify({ ...base, publicKey: keys.newPublicKey, handshakeTimeoutSeconds });
  } catch (err) {
    throw await rollBack({ err, stage, keys, req: { ...base, handshakeTimeoutSeconds }, acts, record });
  }

  // Verified: the new key carries the tunnel. Finish the job even if the run is cancelled now;
  // a finalize that fails for good still must not leave two peers: roll back to the key file's key.
  stage = 'finalize';
  const finalKeys = keys;
  const done = await CancellationScope.nonCancellable(() => acts.rotateFinalize({ ...base, keys: finalKeys })).catch(
    async (err: unknown) => {
      throw await rollBack({ err, stage, keys: finalKeys, req: { ...base, handshakeTimeoutSeconds }, acts, record });
    },
  );
  await record('issueOverlayKey', 'succeeded', {
    detail: {
      rotation: 'succeeded',
      fingerprint: done.fingerprint,
      previousFingerprint: done.previousFingerprint,
      rotatedAt: done.rotatedAt,
    },
  });
  return {
    nodeId: input.nodeId,
    workflowId,
    runId,
    publicKey: keys.newPublicKey,
    fingerprint: done.fingerprint,
    previousFingerprint: done.previousFingerprint,
    rotatedAt: done.rotatedAt,
    resumed: keys.resumed,
    hubs: verified.hubs,
    probe: verified.probe,
    removedOldPeer: done.removedOldPeer,
  };
}

function acceptRequest(raw: unknown): RotateRequest {
  const checked = checkRotateRequest(raw);
  if (checked.ok) return checked.value;
  throw ApplicationFailure.create({
    type: 'InvalidInput',
    message: redactSecrets(`invalid rotation request: ${checked.problems.join('; ')}`),
    nonRetryable: true,
    details: [{ issues: checked.problems.map(redactSecrets) }],
  });
}

type Acts = ReturnType<typeof rotationActivitiesFor>;

/**
 * Undo stages 1-3 (nothing when stage 1 refused the node: it changed nothing)
 * and return the failure the run ends with: the original type, what failed and
 * where, and whether the old tunnel was proved again. A cancellation is
 * rolled back too and ends the run cancelled.
 */
async function rollBack(ctx: {
  err: unknown;
  stage: Stage;
  keys: RotationKeys | null;
  req: { input: RotateRequest['input']; run: { workflowId: string; runId: string }; handshakeTimeoutSeconds: number };
  acts: Acts;
  record: RecordEvent;
}): Promise<unknown> {
  const { err, stage, keys, req, acts, record } = ctx;
  const nodeId = req.input.nodeId;
  const info = describeFailure('issueOverlayKey', err);
  const cancelled = isCancellation(err);
  return CancellationScope.nonCancellable(async () => {
    await record('issueOverlayKey', 'failed', {
      errorType: info.type,
      detail: { rotation: 'failed', stage, message: info.message },
    });
    if (stage === 'prepare' && !cancelled && errorClassOf(info.type) !== 'transient') {
      return failureOf(
        info.type,
        `key rotation of ${nodeId} refused at stage ${stage} (${info.type}): ${info.message}; nothing was changed`,
        { stage, rolledBack: false },
        err,
      );
    }
    try {
      const rb = await acts.rotateRollback({ ...req, keys });
      await record('issueOverlayKey', 'compensated', {
        detail: {
          rotation: 'rolled back',
          stage,
          fingerprint: rb.fingerprint,
          restored: rb.restored,
          removed: rb.removed,
        },
      });
      if (cancelled) return err;
      return failureOf(
        info.type,
        `key rotation of ${nodeId} failed at stage ${stage} (${info.type}): ${info.message}; rolled back: the node is on its old key ${rb.fingerprint}, tunnel verified`,
        { stage, rolledBack: true, fingerprint: rb.fingerprint, restored: rb.restored, removed: rb.removed },
        err,
      );
    } catch (rbErr) {
      const rbInfo = describeFailure('issueOverlayKey', rbErr);
      await record('issueOverlayKey', 'compensation_failed', {
        errorType: rbInfo.type,
        detail: { rotation: 'rollback failed', stage, message: rbInfo.message },
      });
      return failureOf(
        info.type,
        `key rotation of ${nodeId} failed at stage ${stage} (${info.type}): ${info.message}; the rollback failed too (${rbInfo.type}): ${rbInfo.message}; rotate again (every stage resumes) or repair the node`,
        { stage, rolledBack: false, rollbackError: rbInfo },
        err,
      );
    }
  });
}

function failureOf(
  type: string,
  message: string,
  details: Record<string, unknown>,
  cause: unknown,
): ApplicationFailure {
  return ApplicationFailure.create({
    type,
    message: redactSecrets(message),
    nonRetryable: true,
    details: [details],
    cause: cause instanceof Error ? cause : undefined,
  });
}

/**
 * The rotation's activities, one deadline class each: the node and hub stages
 * (input.timeouts.issueOverlayKey), the verification (the handshake budget,
 * its own timeouts not retried: waiting longer is the rollback's call, but a
 * dead worker's attempt is), the rollback (undo deadline + a verification).
 */
function rotationActivitiesFor({ input, handshakeTimeoutSeconds }: RotateRequest) {
  const retry = retryPolicyFor(input);
  const base: ActivityOptions = { retry, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED };
  const withDeadline = (seconds: number, summary: string, extra: Partial<ActivityOptions> = {}) =>
    proxyActivities<RotationActivities>({
      ...base,
      startToCloseTimeout: seconds * 1000,
      heartbeatTimeout: heartbeatTimeoutMs(seconds),
      summary,
      ...extra,
    });
  const stage = input.timeouts.issueOverlayKey;
  const verifySeconds = handshakeTimeoutSeconds + 15;
  const ledger = proxyLocalActivities<Pick<Activities, 'recordEvent'>>({ retry, startToCloseTimeout: 30_000 });
  return {
    rotatePrepareKey: withDeadline(stage, 'rotation 1: the node makes a new key').rotatePrepareKey,
    rotateAddHubPeers: withDeadline(stage, 'rotation 2: every hub gets the new peer').rotateAddHubPeers,
    rotateSwitchKey: withDeadline(stage, 'rotation 3: routes move, the node switches key').rotateSwitchKey,
    rotateVerify: withDeadline(verifySeconds, 'rotation 4: fresh handshakes and the probe', {
      retry: {
        ...retry,
        nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES, 'PeerHandshakeTimeout', 'ProbeFailed'],
      },
    }).rotateVerify,
    rotateFinalize: withDeadline(stage, 'rotation 5: old peer removed, ledger updated').rotateFinalize,
    rotateRollback: withDeadline(input.timeouts.compensation + verifySeconds, 'rotation rollback: back to the old key')
      .rotateRollback,
    recordEvent: ledger.recordEvent,
  };
}
