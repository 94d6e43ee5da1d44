#!/usr/bin/env bash
# On the GPU machine: wait up to SECONDS (default 540) for the detached sweep, print where it
# is, and pack the records so far into $OUT/records.tgz (scripts/gpu/collect.sh). Call it
# back to back (a machine idle for 30 s is given back) until it prints "sweep done".
set -uo pipefail
S=${STAGE:-$HOME/stage}
end=$(( $(date +%s) + ${1:-540} ))
while [ ! -f "$S/sweep.done" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
grep -E '^===|FINISHED|FAILED|SKIPPED|no job' "$S/sweep.log" | tail -n 30
[ -f "$S/sweep.done" ] && echo "sweep done" || echo "sweep still running"
cp "$S/sweep.log" "${OUT:-.}/sweep.log" 2>/dev/null || true
bash scripts/gpu/collect.sh
