#!/usr/bin/env bash
# On the GPU machine: wait up to SECONDS for a job started by scripts/gpu/start.sh, print where
# it is, and pack the records so far into $OUT/records.tgz (scripts/gpu/collect.sh). Call it back
# to back (a machine idle for 30 s is given back) until it prints "<name> done".
#   bash scripts/gpu/wait.sh [NAME=sweep] [SECONDS=540]
set -uo pipefail
S=${STAGE:-$HOME/stage}
name=${1:-sweep}
end=$(( $(date +%s) + ${2:-540} ))
while [ ! -f "$S/$name.done" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 3; done
grep -v -E ': [0-9]+/[0-9]+ \(' "$S/$name.log" | grep -E '^\[|===|FINISHED|FAILED|SKIPPED|done|exit|rc=|Error' | tail -n 40
[ -f "$S/$name.done" ] && echo "$name done ($(cat "$S/$name.done"))" || echo "$name still running"
uptime
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
cp "$S/$name.log" "${OUT:-.}/$name.log" 2>/dev/null || true
bash scripts/gpu/collect.sh
