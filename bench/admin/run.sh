#!/usr/bin/env bash
# Admin API benchmark: 1,000-user CSV import end to end, phonebook search at
# 100,000 entries (p50/p99). See README.md next to this file.
#
#   bench/admin/run.sh        # results in bench/admin/last-result.txt
#
# Environment: TSUNAGU_BIN (default target/release/tsunagu, built if
# missing), BUILD=1 (rebuild), RUNS=3, USERS=1000, ENTRIES=100000,
# SEARCHES=2000, RESULT_FILE.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export TSUNAGU_BIN=${TSUNAGU_BIN:-$ROOT/target/release/tsunagu}
RESULT_FILE=${RESULT_FILE:-$HERE/last-result.txt}
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$TSUNAGU_BIN" ]; then
  (cd "$ROOT" && flock /tmp/cargo.lock cargo build --release --locked -p tsunagu-server)
fi
t0=$(date +%s)
# Hold the build lock while measuring: no compile competes for the cores.
out=$(flock /tmp/cargo.lock python3 "$HERE/bench.py")
{
  echo "# bench/admin $(date -u +%Y-%m-%dT%H:%MZ), $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet || echo '+changes'), $(($(date +%s) - t0)) s"
  echo "$out"
} | tee "$RESULT_FILE"
