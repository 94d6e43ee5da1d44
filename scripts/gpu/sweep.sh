#!/usr/bin/env bash
# On the GPU machine, from the repo root, after scripts/gpu/install.sh:
#   bash scripts/gpu/sweep.sh [SECONDS]
# The TensorRT sweep of docs/results/tensorrt-<gpu>.md on yolov8n / coco_val / 640, with
# tracking=none (records only). It stops starting jobs after SECONDS (default 540, so a device
# call of 10 minutes ends cleanly) and is resumable: run it again and FINISHED jobs are reused.
# Then scripts/gpu/collect.sh packs the records for `qexp ingest` at home.
# Engine builds can outlast a device call (yolov8n, TensorRT 8.6, H100: fp32 200 s, fp16 > 520 s):
# scripts/gpu/start.sh runs this script detached, so call boundaries never interrupt a build.
set -uo pipefail
budget=${1:-540}
deadline=$(( $(date +%s) + budget ))
. "${STAGE:-$HOME/stage}/env.sh"
out=${QEXP_OUT:-$HOME/qexp-out}
# EXTRA: more overrides (a dry run elsewhere: EXTRA="data.max_images=4 model.imgsz=320")
# shellcheck disable=SC2206
common=(model=yolov8n data=coco_val backend=tensorrt tracking=none
        experiment_name=tensorrt_yolov8n "paths.output_dir=$out" ${EXTRA:-})
sweeps=(
  "quantizer=none,fp16"
  "quantizer=ptq observer=minmax,entropy quantizer.export=qdq,dynamic_range"
  "quantizer=trt_builtin calibrator=minmax,entropy2"
)
finished() { find "$out" -name result.json -exec grep -l '"status": "FINISHED"' {} + 2>/dev/null | wc -l; }
for s in "${sweeps[@]}"; do
  left=$(( deadline - $(date +%s) ))
  if [ "$left" -lt 30 ]; then echo "time budget spent; re-run to resume"; break; fi
  echo "=== $s ($left s left)"
  # shellcheck disable=SC2086
  timeout --signal=INT --kill-after=20 "$left" python3 -m qexp.cli -m "${common[@]}" $s 2>&1 |
    grep -v -E ': [0-9]+/[0-9]+ \(' | tail -n 40
  if [ "$(finished)" -eq 0 ]; then  # nothing works: stop here and show why, not 8 more times
    echo "no job FINISHED; first error:"
    find "$out" -name result.json -exec grep -h -E -A40 '"(error|reason)": "' {} + | head -60
    exit 3
  fi
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
rows = []
for p in sorted(Path(sys.argv[1]).rglob("result.json")):
    r = json.loads(p.read_text())
    m = r.get("metrics", {})
    rows.append((r["status"], r["choices"].get("quantizer"), r["choices"].get("calibrator"),
                 r["choices"].get("observer"), r["config"].get("quantizer", {}).get("export"),
                 m.get("map50_95"), m.get("latency_ms_p50"), m.get("throughput_ips_b32"),
                 (r.get("reason") or r.get("error") or "")[:160]))
for row in rows:
    print(" | ".join(str(x) for x in row))
PY
touch "${STAGE:-$HOME/stage}/sweep.done"
