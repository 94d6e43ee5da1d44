#!/usr/bin/env bash
# On the GPU machine (after install.sh): the recipe search on TensorRT as ONE qexp command
# (conf/experiment/int8_search_trt.yaml: fp16 reference, then the trials, the best hand-written
# row first), trials built side by side on the GPU. Resumable (the Optuna study and the records).
# Extra arguments are more overrides (model=yolov5n, hydra.sweeper.n_trials=24).
set -uo pipefail
. "${STAGE:-$HOME/stage}/env.sh"
out=${QEXP_OUT:-$HOME/qexp-out}
t0=$(date +%s)
python3 -m qexp.cli experiment=int8_search_trt "paths.output_dir=$out" "$@"
rc=$?
echo "search wall: $(( $(date +%s) - t0 )) s"
for f in "$out"/sweeps/int8_search_trt_*/*/search.md; do [ -f "$f" ] && cat "$f"; done
exit $rc
