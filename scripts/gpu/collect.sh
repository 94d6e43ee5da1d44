#!/usr/bin/env bash
# On the GPU machine: pack the records under $QEXP_OUT (result.json, config.yaml, artifacts/,
# worker logs, requests) into $OUT/records.tgz, one file that comes back through the device
# tool. Engines, ONNX files and raw outputs stay behind (large, and tied to that GPU); the raw
# build logs come too when COLLECT_BUILD_LOGS=1 (a few MB each). At home:
#   mkdir -p outputs/gpu && tar -xzf <files_at>/records.tgz -C outputs/gpu
#   qexp ingest outputs/gpu
set -euo pipefail
out=${QEXP_OUT:-$HOME/qexp-out}
dest=${OUT:-.}/records.tgz
cd "$out"
extra=()
[ "${COLLECT_BUILD_LOGS:-0}" = 1 ] && extra=(-o -name build_log.txt.gz)
find . \( -name result.json -o -name config.yaml -o -name calibration.json -o -path '*/artifacts/*' -o -name worker.log \
       -o -name 'request*.json' -o -name '*.log' "${extra[@]}" \) -type f -size -8M -print0 |
  tar --null -czf "$dest" --files-from=-
ls -la "$dest"
