#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu/matrix.sh: engines of the matrix rebuilt one at a time,
# nothing else on the GPU (backend.reuse_engine=false, a fresh qexp process each), so that
# scripts/gpu/matrix_table.py can set the pool's build seconds and engine throughput beside
# those of the same engine built alone.  ALONE="yolov8n.yaml:fp16 yolov8n.yaml:ptq_trt" (default)
set -uo pipefail
. "${STAGE:-$HOME/stage}/env.sh"
out=${QEXP_OUT:-$HOME/qexp-out}
rc=0
for row in ${ALONE:-yolov8n.yaml:fp16 yolov8n.yaml:ptq_trt}; do
  python3 -m qexp.cli experiment=arch_matrix hydra.mode=RUN "model.weights=${row%%:*}" \
    "quantizer=${row##*:}" backend.reuse_engine=false experiment_name=arch_alone \
    "paths.output_dir=$out" "$@" || rc=1
done
python3 scripts/gpu/matrix_table.py "$out" || true
exit $rc
