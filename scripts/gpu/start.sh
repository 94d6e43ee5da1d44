#!/usr/bin/env bash
# On the GPU machine, from the repo root: run a job script detached (its own process session
# survives the device call that started it, until the machine is given back), logging to
# $STAGE/<name>.log; $STAGE/<name>.done appears when it ends. Follow with scripts/gpu/wait.sh.
#   bash scripts/gpu/start.sh sweep            # scripts/gpu/sweep.sh: the 8-row sweep
#   bash scripts/gpu/start.sh bench            # scripts/gpu/bench_build.py: build levers
#   bash scripts/gpu/start.sh NAME CMD...      # anything else
set -euo pipefail
S=${STAGE:-$HOME/stage}
name=${1:-sweep}; shift || true
case "$name" in
  sweep) cmd=(bash scripts/gpu/sweep.sh "$@") ;;
  bench) cmd=(python3 scripts/gpu/bench_build.py "$@") ;;
  session) cmd=(bash scripts/gpu/session.sh "$@") ;;
  *) cmd=("$@") ;;
esac
rm -f "$S/$name.done"
setsid nohup bash -c '. "$0/env.sh"; "${@:2}"; echo "exit $?" > "$0/$1.done"' "$S" "$name" "${cmd[@]}" \
  > "$S/$name.log" 2>&1 < /dev/null &
echo "$name started (pid $!), log $S/$name.log"
