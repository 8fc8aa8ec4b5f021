/**
 * The custom search attributes node-bootstrap runs carry, as typed keys.
 *
 * They make runs findable in the Web UI and with `temporal workflow list --query`
 * (e.g. `FailedStep="startSpireAgent"`). The dev server registers them at start
 * (lab/temporal.ts passes DEV_SERVER_SEARCH_ATTRIBUTES); a real cluster needs
 * `temporal operator search-attribute create` once per attribute.
 * Imported by workflows: no Node built-ins here.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** The node being provisioned (its id, e.g. "edge-01"). Set at start. */
export const NodeIdKey = defineSearchAttributeKey('NodeId', SearchAttributeType.KEYWORD);
/** The node's network segment. Set at start. */
export const SegmentKey = defineSearchAttributeKey('Segment', SearchAttributeType.KEYWORD);
/** The step the run is executing (or executed last), one of STEPS. */
export const BootstrapStepKey = defineSearchAttributeKey('BootstrapStep', SearchAttributeType.KEYWORD);
/** The step that failed for good; cleared when an operator retries it. */
export const FailedStepKey = defineSearchAttributeKey('FailedStep', SearchAttributeType.KEYWORD);
/** The failure's type (one of ERROR_TYPES when it came from our activities). */
export const ErrorTypeKey = defineSearchAttributeKey('ErrorType', SearchAttributeType.KEYWORD);
/** A maintain run's view of its node: healthy, degraded, repairing or broken (common/health.ts HEALTH_STATES). */
export const HealthKey = defineSearchAttributeKey('Health', SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTE_KEYS = [
  NodeIdKey,
  SegmentKey,
  BootstrapStepKey,
  FailedStepKey,
  ErrorTypeKey,
  HealthKey,
] as const;

/** `--search-attribute` values for `temporal server start-dev` ("Name=Keyword"). */
export const DEV_SERVER_SEARCH_ATTRIBUTES: string[] = SEARCH_ATTRIBUTE_KEYS.map((k) => `${k.name}=Keyword`);
