#!/usr/bin/env bash
# The test command (`npm test`): type-check, lint, then every vitest project
# in order: unit (pure code + replay histories), workflow (dev server + activity
# fakes), integration (root, namespaces, SPIRE, PostgreSQL). Prints a plain closing line
# "tests: N passed, N failed, N skipped" for CI.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== typecheck (tsc)" && npx tsc -p . || exit 1
echo "== lint (eslint)" && npx eslint . || exit 1
echo "== format (prettier; fix with npm run format)" && npx prettier --check --log-level warn . || exit 1

report="$(mktemp -t nodeboot-vitest.XXXXXX.json)"
trap 'rm -f "$report"' EXIT
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
' "$report" || status=1
exit $status
