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
py=${PY:-.venv/bin/python}
grep -qx '/.gpu-py/' .git/info/exclude 2>/dev/null || echo '/.gpu-py/' >> .git/info/exclude
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pyv=(--python-version 3.12 --implementation cp --only-binary=:all: --no-deps
     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
$py -m pip download -q "${pyv[@]}" -d "$work/wheels" \
  ultralytics==8.4.190 ultralytics-thop==2.2.3 hydra-core==1.3.8 omegaconf==2.3.1 \
  onnxslim==0.1.98 faster-coco-eval==1.8.0 pytest pluggy iniconfig
$py -m pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w "$work/wheels"
mkdir -p "$work/assets/weights" .gpu-py
cp -r "$assets/coco_val" "$assets/coco128" "$work/assets/"
cp "$assets/weights/yolov8n-coco-from-ovint8.pt" "$work/assets/weights/"
tar -C "$work" -cf .gpu-py/stage.tar wheels assets
du -h .gpu-py/stage.tar
