#!/usr/bin/env bash
# On the GPU machine, from the repo root: run scripts/gpu/sweep.sh detached (its own process
# session survives the device call that started it, until the machine is given back), logging
# to $STAGE/sweep.log. Follow it with scripts/gpu/wait.sh in the next calls.
set -euo pipefail
S=${STAGE:-$HOME/stage}
rm -f "$S/sweep.done"
setsid nohup bash scripts/gpu/sweep.sh "${1:-100000}" > "$S/sweep.log" 2>&1 < /dev/null &
echo "sweep started (pid $!), log $S/sweep.log"
