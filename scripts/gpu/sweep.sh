#!/usr/bin/env bash
# On the GPU machine, from the repo root, after scripts/gpu/install.sh (start it detached with
# scripts/gpu/start.sh sweep): the 8-row TensorRT sweep as ONE qexp command, one job per GPU
# (conf/experiment/tensorrt_sweep.yaml: fp32, fp16, trt_builtin x {minmax, entropy2},
# ptq x {minmax, entropy} x {Q/DQ, dynamic range}), records only (tracking=none). Resumable:
# run it again and FINISHED jobs are reused. Then scripts/gpu/collect.sh packs the records for
# `qexp ingest` at home. Extra arguments are more overrides (e.g. model=yolov5n).
set -uo pipefail
. "${STAGE:-$HOME/stage}/env.sh"
out=${QEXP_OUT:-$HOME/qexp-out}
python3 -m qexp.cli experiment=tensorrt_sweep tracking=none "paths.output_dir=$out" "$@"
rc=$?
python3 scripts/gpu/results_table.py "$out" || true
exit $rc
