/**
 * History <-> JSON (the format `temporal workflow show --output json` prints).
 *
 * Uses the SDK's historyToJSON / historyFromJSON when they work. In this
 * install they do not: npm nests two copies of protobufjs 8 (under
 * @temporalio/common and @temporalio/proto, because grpc's protobufjs 7 holds
 * the top-level slot), so protojson's `instanceof Type` check fails with
 * "type must be a Type". The fallback runs protojson from the copy that built
 * the proto root. Hoisting protobufjs 8 (a direct dependency) makes the
 * fallback unnecessary.
 */
import { createRequire } from 'node:module';
import type { History } from '@temporalio/common/lib/proto-utils.js';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils.js';

interface ProtoJson {
  fromJson(type: unknown, json: unknown, options?: { ignoreUnknownFields?: boolean }): unknown;
  toJson(type: unknown, message: unknown): unknown;
}

let fallback: { protojson: ProtoJson; historyType: unknown; fromObject: (h: History) => unknown } | undefined;
function protoJsonFallback() {
  if (!fallback) {
    const require = createRequire(import.meta.url);
    const protoPath = require.resolve('@temporalio/proto');
    const proto = require('@temporalio/proto') as {
      temporal: { api: { history: { v1: { History: { fromObject(h: History): unknown } } } } };
    };
    const { patchProtobufRoot } = require('@temporalio/proto/lib/patch-protobuf-root') as {
      patchProtobufRoot(root: unknown): { lookupType(name: string): unknown };
    };
    const protojson = createRequire(protoPath)('protobufjs/ext/protojson') as ProtoJson;
    fallback = {
      protojson,
      historyType: patchProtobufRoot(proto).lookupType('temporal.api.history.v1.History'),
      fromObject: (h) => proto.temporal.api.history.v1.History.fromObject(h),
    };
  }
  return fallback;
}

const isTypeMismatch = (err: unknown) => err instanceof TypeError && /must be a Type/.test(err.message);

export function historyToJson(history: History): string {
  try {
    return historyToJSON(history);
  } catch (err) {
    if (!isTypeMismatch(err)) throw err;
    const f = protoJsonFallback();
    return JSON.stringify(f.protojson.toJson(f.historyType, f.fromObject(history)), null, 2);
  }
}

export function historyFromJson(json: unknown): History {
  try {
    return historyFromJSON(json);
  } catch (err) {
    if (!isTypeMismatch(err)) throw err;
    const f = protoJsonFallback();
    return f.protojson.fromJson(f.historyType, json, { ignoreUnknownFields: true }) as History;
  }
}
