#!/usr/bin/env bash
# `npm run faults`: the whole fault matrix (test/faults), then docs/reliability.md from its
# results (written even when cells failed: the page shows them). Durations are inputs:
# NODEBOOT_FAULT_OUTAGE_S, NODEBOOT_FAULT_OBSERVE_S, NODEBOOT_FAULT_STUCK_S (test/faults/runner.ts).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)
npx vitest run --config vitest.faults.config.ts "$@"
status=$?
echo "== fault matrix took $(( $(date +%s) - start ))s"
npx tsx scripts/reliability-report.ts "${NODEBOOT_FAULT_RESULTS:-docs/reliability.json}" docs/reliability.md || status=1
exit $status
