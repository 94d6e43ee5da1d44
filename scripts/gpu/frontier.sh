#!/usr/bin/env bash
# On the GPU machine, from the repo root, after scripts/gpu/install.sh (start it detached with
# `bash scripts/gpu/start.sh frontier bash scripts/gpu/frontier.sh`): the INT8 frontier of
# issue 15 as ONE qexp command, one job per GPU (conf/experiment/int8_frontier.yaml, one recipe
# per row), records only. Resumable: run it again and FINISHED jobs are reused.
#   ROWS=fp16,ptq_trt_minmax bash scripts/gpu/frontier.sh model=yolov5n   # a subset, another model
# Rows start in the order given (the launcher hands them to the GPUs as they free up), so the
# default order puts the explicit Q/DQ rows first: on one GPU they share a graph, and the
# serving worker's in-memory timing cache makes the second and later builds of it cheap.
set -uo pipefail
. "${STAGE:-$HOME/stage}/env.sh"
out=${QEXP_OUT:-$HOME/qexp-out}
rows=${ROWS:-ptq_trt_minmax,ptq_minmax,fp16,trt_minmax,ptq_trt_percentile,ptq_percentile,ptq_trt_entropy,ptq_entropy,ptq_trt_mse,ptq_mse,topk3,adaround,qat,topk5,trt_entropy2,ptq_dr_minmax,modelopt_max,ptq_dr_trt_topk3}
python3 -m qexp.cli experiment=int8_frontier "recipe=$rows" \
  "paths.output_dir=$out" "$@"
rc=$?
python3 scripts/gpu/frontier_table.py "$out/sweeps" --latest || true
exit $rc
