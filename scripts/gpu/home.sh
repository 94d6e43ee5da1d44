#!/usr/bin/env bash
# Here, after a device call that ran scripts/gpu/wait.sh or collect.sh, from the repo root:
#   bash scripts/gpu/home.sh <files_at>
# - records.tgz -> outputs/gpu (then `qexp ingest outputs/gpu`: MLflow runs, idempotent), and
#   the same records -> the carry dir (~/.cache/qexp-gpu-stage/carry: outside the work tree,
#   which a new session lays anew), so the next pack.sh carries them out: a sweep re-run in
#   the next lease reuses its FINISHED jobs (resume by config hash, through index/);
# - engines-NN.tar -> <carry>/cache/trt_engine: the next lease's jobs find their
#   engines in the cache (keyed by ONNX content, build options, TensorRT version and GPU name)
#   and rebuild none they already have.
set -euo pipefail
src=${1:?usage: home.sh FILES_AT}
carry=${QEXP_STAGE_CACHE:-$HOME/.cache/qexp-gpu-stage}/carry
mkdir -p outputs/gpu "$carry"
if [ -f "$src/records.tgz" ]; then
  tar -xzf "$src/records.tgz" -C outputs/gpu
  tar -xzf "$src/records.tgz" -C "$carry"
fi
for t in "$src"/engines-*.tar; do
  [ -f "$t" ] && tar -xf "$t" -C "$carry"
done
echo "carry for the next lease: $(find "$carry/cache/trt_engine" -name engine.plan 2>/dev/null | wc -l) engines, $(find "$carry" -name result.json | wc -l) records ($(du -sh "$carry" | cut -f1))"
if [ -x .venv/bin/qexp ]; then .venv/bin/qexp ingest outputs/gpu || true; fi
