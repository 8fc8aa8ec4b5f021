/**
 * maintainNode: check a provisioned node's whole chain and repair only what
 * broke. Runs as `maintain/<nodeId>` (common/ids.ts).
 *
 *   check → all ok (or only degraded): done
 *         → a security finding: hold for an operator, repair nothing
 *         → broken: re-run the owner of each broken link and the steps that
 *           depend on it (common/health.ts repairPlan), then check again;
 *           a repair step that fails, or rounds spent with the node still
 *           broken: hold for an operator
 *
 * The steps are provisionNode's own idempotent activities with the same
 * StepRequest, fed the node's latest provisioning input (common/maintain.ts).
 * Nothing is ever undone here: a node that was working stays as it is while a
 * person decides. `decide` retry: check and repair again (fresh rounds);
 * compensate: stop, leave the node as it is, end with its health (the name is
 * provisionNode's; nothing is compensated).
 */
import {
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities, StepRequest } from '../activities/types.js';
import { failure } from '../common/errors.js';
import {
  brokenLinks,
  describeLinks,
  healthOf,
  repairPlan,
  securityFindings,
  type HealthReport,
  type HealthState,
} from '../common/health.js';
import {
  maintainStatusQuery,
  MaintainOptions,
  type MaintainInput,
  type MaintainResult,
  type MaintainStatus,
} from '../common/maintain.js';
import { HealthKey, NodeIdKey, SegmentKey } from '../common/search-attributes.js';
import type { StepName } from '../common/steps.js';
import { decideUpdate, type Decision } from '../common/definitions.js';
import { PROVISIONED_NODE_RULES } from '../common/validate.js';
import { describeFailure, validateInput, validationRules } from './failures.js';
import { acceptDecisions } from './decisions.js';
import { eventRecorder, type RecordEvent } from './events.js';
import { activitiesFor, heartbeatTimeoutMs, retryPolicyFor } from './proxies.js';

/** A check reads a dozen things on the node, the hubs and the server, and fetches each workload's SVID. */
const CHECK_TIMEOUT_SECONDS = 120;

type Hold = NonNullable<MaintainStatus['heldFor']>;

export async function maintainNode(raw: MaintainInput): Promise<MaintainResult> {
  const { workflowId, runId } = workflowInfo();
  const status: MaintainStatus = {
    workflowId,
    runId,
    nodeId: null,
    state: 'checking',
    health: null,
    heldFor: null,
    rounds: [],
    lastCheck: null,
  };
  setHandler(maintainStatusQuery, () => status);
  const decisions = acceptDecisions(decideUpdate, {
    run: 'maintain run',
    state: () => status.state,
    ack: (d) => ({ action: d.action, step: status.heldFor!.step }),
  });

  // As decommission and rotation do: a node provisioned when a `port` alone named the built-in
  // workload can still be checked (a repair of its step 6 then fails InvalidInput naming the field).
  const input = validateInput(raw?.provision, { ...validationRules(), ...PROVISIONED_NODE_RULES });
  const opts = parseOptions(raw);
  status.nodeId = input.nodeId;
  const acts = activitiesFor(input);
  const { checkNode } = proxyActivities<Activities>({
    retry: retryPolicyFor(input),
    startToCloseTimeout: CHECK_TIMEOUT_SECONDS * 1000,
    heartbeatTimeout: heartbeatTimeoutMs(CHECK_TIMEOUT_SECONDS),
    summary: 'check every link of the node (read-only)',
  });
  const record: RecordEvent = eventRecorder(acts.recordEvent, input.nodeId);
  const req: StepRequest = { input, run: { workflowId, runId } };
  const setHealth = (h: HealthState) => {
    status.health = h;
    upsertSearchAttributes([{ key: HealthKey, value: h }]);
  };
  upsertSearchAttributes([
    { key: NodeIdKey, value: input.nodeId },
    { key: SegmentKey, value: input.segment },
  ]);
  await record('workflow', 'started', { detail: { maintain: true, maxRepairRounds: opts.maxRepairRounds } });

  const check = async (): Promise<HealthReport> => {
    status.state = 'checking';
    const report = await checkNode({ input, thresholds: opts.thresholds });
    status.lastCheck = report;
    setHealth(healthOf(report));
    await record('workflow', 'checked', {
      detail: {
        status: report.status,
        links: report.links
          .filter((l) => l.status !== 'ok')
          .map(({ link, step, status: s, detail, security }) => ({
            link,
            step,
            status: s,
            detail,
            security: !!security,
          })),
      },
    });
    return report;
  };

  /** Wait for an operator. Resolves with their action. */
  const hold = async (h: Hold, errorType?: string): Promise<Decision['action']> => {
    status.state = 'held';
    status.heldFor = h;
    setHealth('broken');
    log.warn('maintain run holding for an operator', { ...h });
    await record(h.step, 'held', { errorType, detail: { maintain: true, reason: h.reason, detail: h.detail } });
    const { action } = await decisions.next();
    status.heldFor = null;
    await record(h.step, 'decision', { detail: { maintain: true, action } });
    return action;
  };

  /**
   * Re-run `steps` in order; the first failure stops the round. An agent the
   * check says must start afresh (`restart`: dead, wiped, evicted, unhealthy) is
   * first taken down by step 4's own undo, so step 4 attests it anew.
   */
  const repair = async (
    round: number,
    steps: StepName[],
    broken: HealthReport['links'],
  ): Promise<MaintainStatus['rounds'][number]> => {
    status.state = 'repairing';
    setHealth('repairing');
    const r: MaintainStatus['rounds'][number] = { round, broken: broken.map((l) => l.link), steps, failedStep: null };
    status.rounds.push(r);
    const resetAgent = broken.some((l) => l.kind === 'agent' && !l.security && l.evidence.restart === true);
    for (const step of steps) {
      await record(step, 'started', { attempt: round, detail: { repair: true } });
      try {
        if (step === 'startSpireAgent' && resetAgent) await acts.undoStartSpireAgent({ ...req, reason: 'failure' });
        await acts[step](req);
        await record(step, 'succeeded', { attempt: round, detail: { repair: true } });
      } catch (err) {
        if (isCancellation(err)) throw err;
        const info = describeFailure(step, err);
        Object.assign(r, { failedStep: step, errorType: info.type });
        await record(step, 'failed', {
          attempt: round,
          errorType: info.type,
          detail: { repair: true, message: info.message },
        });
        return r;
      }
    }
    return r;
  };

  const first = await check();
  let report = first;
  let roundsLeft = opts.maxRepairRounds;
  let round = 0;
  let stoppedByOperator = false;
  for (;;) {
    const broken = brokenLinks(report);
    if (broken.length === 0) break;
    const security = securityFindings(report);
    let held: { hold: Hold; errorType?: string } | undefined;
    if (security.length) {
      held = {
        hold: {
          reason: 'security',
          step: security[0]!.step,
          detail: describeLinks({ ...report, links: security }).join('; '),
        },
      };
    } else if (roundsLeft === 0) {
      held = {
        hold: {
          reason: 'still-broken',
          step: broken[0]!.step,
          detail: describeLinks({ ...report, links: broken }).join('; '),
        },
      };
    } else {
      roundsLeft -= 1;
      const r = await repair(++round, repairPlan(report), broken);
      if (r.failedStep)
        held = {
          hold: { reason: 'repair-failed', step: r.failedStep, detail: `${r.failedStep} failed (${r.errorType})` },
          errorType: r.errorType,
        };
      else report = await check();
    }
    if (held) {
      if ((await hold(held.hold, held.errorType)) === 'compensate') {
        stoppedByOperator = true;
        break;
      }
      roundsLeft = opts.maxRepairRounds;
      report = await check();
    }
  }

  status.state = 'done';
  const health = healthOf(report);
  setHealth(health);
  await record('workflow', health === 'broken' ? 'failed' : 'succeeded', {
    detail: { maintain: true, health, rounds: status.rounds.length, stoppedByOperator },
  });
  return {
    nodeId: input.nodeId,
    workflowId,
    runId,
    health,
    firstCheck: first,
    lastCheck: report,
    rounds: status.rounds,
    stoppedByOperator,
  };
}

/** The options beside the provisioning input; a bad one fails the run with InvalidInput naming the field. */
function parseOptions(raw: MaintainInput): MaintainOptions {
  const { provision: _p, ...rest } = raw ?? ({} as MaintainInput);
  const r = MaintainOptions.safeParse(rest);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`);
  // Same shape as every other invalid input (workflows/failures.ts).
  throw invalidOptions(problems);
}

function invalidOptions(problems: string[]) {
  return failure('InvalidInput', `invalid input: ${problems.join('; ')}`, { details: [{ issues: problems }] });
}
