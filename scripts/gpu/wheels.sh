#!/usr/bin/env bash
# Here: bash scripts/gpu/wheels.sh DIR [EXTRA_PACKAGE ...]
# Downloads into DIR the cp312 wheels the GPU image lacks for qexp's main process (its
# python3.12 has torch, onnx, onnxruntime and opencv), the recipe search's (optuna and its
# storage), plus any extra pure-Python packages.
# Used by pack.sh (TensorRT stage) and pack_py.sh (torch-only stage).
set -euo pipefail
dir=$1; shift
py=${PY:-.venv/bin/python}
pyv=(--python-version 3.12 --implementation cp --only-binary=:all: --no-deps
     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
$py -m pip download -q "${pyv[@]}" -d "$dir" \
  ultralytics==8.4.190 ultralytics-thop==2.2.3 hydra-core==1.3.8 omegaconf==2.3.1 \
  onnxslim==0.1.98 faster-coco-eval==1.8.0 hydra-joblib-launcher==1.2.0 joblib==1.6.0 \
  optuna==5.1.0 hydra-optuna-sweeper==1.3.0 sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 \
  markupsafe==3.0.4 colorlog==6.12.0 "$@"
# antlr4's runtime 4.9.3 (hydra's parser) is an sdist on PyPI: build its pure-Python wheel here
ls "$dir"/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1 ||
  $py -m pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w "$dir"
