#!/usr/bin/env bash
# On the GPU machine: pack the sweep's records (result.json, config.yaml, artifacts/) into
# $OUT/records.tgz, one file that comes back through the device tool. At home:
#   mkdir -p outputs/gpu && tar -xzf <files_at>/records.tgz -C outputs/gpu
#   qexp ingest outputs/gpu
# Engines, ONNX files and raw outputs stay behind (they are large and tied to that GPU).
set -euo pipefail
out=${QEXP_OUT:-$HOME/qexp-out}
dest=${OUT:-.}/records.tgz
cd "$out"
find . \( -name result.json -o -name config.yaml -o -path '*/artifacts/*' -o -name worker.log \
       -o -name 'request*.json' \) -type f -print0 |
  tar --null -czf "$dest" --files-from=-
ls -la "$dest"
