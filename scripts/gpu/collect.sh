#!/usr/bin/env bash
# On the GPU machine: pack the records under $QEXP_OUT (result.json, config.yaml, artifacts/,
# the resume index, worker logs, requests; the calibration statistics, TensorRT calibration
# caches and pre-build verdicts, the search's Optuna study (optuna.db), so the next lease
# continues the study, exports byte-identical ONNX and finds its
# engines by the same key) into $OUT/records.tgz, and the engines built since
# the last call (qexp's engine cache, cache/trt_engine/<key>/engine.plan + .json) into
# $OUT/engines-NN.tar, at most ENGINE_MIB (44) MiB a call in files of <= 15 MiB, so that with the
# records they stay inside one device call's 8 files / 64 MiB. ONNX files and raw outputs stay
# behind; the raw build logs come too when COLLECT_BUILD_LOGS=1 (a few MB each). At home:
#   bash scripts/gpu/home.sh <files_at>    # records -> outputs/gpu + qexp ingest; engines and
#                                          # records -> the carry dir for the next lease
set -euo pipefail
out=${QEXP_OUT:-$HOME/qexp-out}
S=${STAGE:-$HOME/stage}
dest=${OUT:-.}
cd "$out"
extra=()
[ "${COLLECT_BUILD_LOGS:-0}" = 1 ] && extra=(-o -name build_log.txt.gz)
find . \( -name result.json -o -name config.yaml -o -name calibration.json -o -path '*/artifacts/*' -o -name worker.log \
       -o -path './index/*.txt' -o -path './cache/calib/*' -o -path './cache/trt_calib/*' -o -path './cache/trt_precheck/*' \
       -o -name 'request*.json' -o -name '*.log' -o -name optuna.db "${extra[@]}" \) -type f -size -8M -print0 |
  tar --null -czf "$dest/records.tgz" --files-from=-
ls -la "$dest/records.tgz"
[ -d cache/trt_engine ] || exit 0
sent="$S/engines.sent"; touch "$sent"
budget=$(( ${ENGINE_MIB:-44} << 20 )); part=$(( 15 << 20 )); n=0; size=0; total=0; list=()
flush() {
  [ ${#list[@]} -gt 0 ] || return 0
  tar -cf "$dest/engines-$(printf %02d $n).tar" "${list[@]}"
  printf '%s\n' "${list[@]}" | grep 'engine.plan$' >> "$sent"
  n=$((n + 1)); size=0; list=()
}
for plan in cache/trt_engine/*/engine.plan; do
  [ -f "$plan.json" ] || continue                # still being written
  grep -qxF "$plan" "$sent" && continue
  b=$(( $(stat -c %s "$plan") + $(stat -c %s "$plan.json") ))
  [ "$b" -le "$part" ] || { echo "engine $plan is over 15 MiB: stays here"; echo "$plan" >> "$sent"; continue; }
  [ $((total + b)) -le "$budget" ] || break      # the rest comes with the next call
  [ $((size + b)) -le "$part" ] || flush
  list+=("$plan" "$plan.json"); size=$((size + b)); total=$((total + b))
done
flush
echo "engines: $(ls "$dest"/engines-*.tar 2>/dev/null | wc -l) files this call, $(wc -l < "$sent") sent in all"
