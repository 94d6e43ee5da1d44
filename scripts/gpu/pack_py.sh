#!/usr/bin/env bash
# Here (a CPU machine with the package registries), from the repo root:
#   bash scripts/gpu/pack_py.sh
# Builds .gpu-py/stage.tar (git-ignored, ~50 MiB): what the GPU machine lacks for qexp's
# torch-only work (QAT, AdaRound, sensitivity on CUDA; no TensorRT): the cp312 wheels of
# scripts/gpu/pack.sh, pytest (for `pytest -m gpu tests/gpu/test_cuda_quant.py`) and the
# assets those jobs read (coco_val, coco128, yolov8n).
# It fits in one device call beside the repo; then `bash scripts/gpu/install_py.sh` there.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
assets=${QEXP_ASSETS:-$root/../shared/assets}
grep -qx '/.gpu-py/' .git/info/exclude 2>/dev/null || echo '/.gpu-py/' >> .git/info/exclude
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash scripts/gpu/wheels.sh "$work/wheels" pytest pluggy iniconfig
mkdir -p "$work/assets/weights" .gpu-py
cp -r "$assets/coco_val" "$assets/coco128" "$work/assets/"
cp "$assets/weights/yolov8n-coco-from-ovint8.pt" "$work/assets/weights/"
tar -C "$work" -cf .gpu-py/stage.tar wheels assets
du -h .gpu-py/stage.tar
