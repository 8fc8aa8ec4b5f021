#!/usr/bin/env bash
# `npm run faults`: the whole fault matrix (test/faults), then docs/reliability.md from its
# results (written even when cells failed: the page shows them). Durations are inputs:
# NODEBOOT_FAULT_OUTAGE_S, NODEBOOT_FAULT_OBSERVE_S, NODEBOOT_FAULT_STUCK_S (test/faults/runner.ts).
#
# With NODEBOOT_LAB_LOCK=<file> (a machine whose lab is shared, e.g. /tmp/nb/lab.lock) the matrix
# runs in three parts of a few rows each, each part holding the lock only while it runs, and
# the parts' results are merged into one file.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
results="${NODEBOOT_FAULT_RESULTS:-docs/reliability.json}"
start=$(date +%s)
status=0
if [ -n "${NODEBOOT_LAB_LOCK:-}" ]; then
  rm -f "$results"
  for rows in postgres,temporal,reboot spire,race,tunnel hub,undo-kill,disk; do
    echo "== fault matrix part: $rows"
    NODEBOOT_FAULT_ROWS="$rows" flock "$NODEBOOT_LAB_LOCK" npx vitest run --config vitest.faults.config.ts "$@" || status=1
  done
else
  npx vitest run --config vitest.faults.config.ts "$@" || status=1
fi
echo "== fault matrix took $(($(date +%s) - start))s"
npx tsx scripts/reliability-report.ts "$results" docs/reliability.md || status=1
exit $status
