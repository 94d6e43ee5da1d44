#!/usr/bin/env bash
# On the GPU machine (after install.sh): the architecture matrix as ONE qexp command
# (conf/experiment/arch_matrix.yaml: 8 ultralytics families x {ptq_trt, fp16}), jobs_per_gpu
# builds at a time on each GPU (QEXP_JOBS_PER_GPU, qexp/gpus.py), each timing alone on its GPU.
# Resumable. Extra arguments are more overrides.
set -uo pipefail
. "${STAGE:-$HOME/stage}/env.sh"
out=${QEXP_OUT:-$HOME/qexp-out}
t0=$(date +%s)
python3 -m qexp.cli experiment=arch_matrix "paths.output_dir=$out" "$@"
rc=$?
echo "matrix wall: $(( $(date +%s) - t0 )) s"
python3 scripts/gpu/matrix_table.py "$out" || true
exit $rc
