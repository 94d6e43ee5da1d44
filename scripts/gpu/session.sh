#!/usr/bin/env bash
# On the GPU machine, started detached by `bash scripts/gpu/start.sh session [STEP...]`: what a
# device session measures, in the order given (default: the list below, most important first),
# each step's log in $STAGE/<step>.log and a $STAGE/<step>.done marker, so
# scripts/gpu/wait.sh <step> can follow any of them:
#   frontier   the yolov8n INT8 frontier, one command, one job per GPU (scripts/gpu/frontier.sh)
#   frontier5  the yolov5n frontier (fp16, implicit, Q/DQ with/without rules, top-k, AdaRound, QAT)
#   papers     the three paper smoke configs on TensorRT
#   sweep      the 8-row TensorRT sweep (scripts/gpu/sweep.sh)
#   calib      the calibration pass on CUDA vs CPU (scripts/bench_calibration.py)
#   gputest    the GPU tests (tests/gpu: calibration on CUDA = CPU, the serving worker)
#   bench      builder levers (scripts/gpu/bench_build.py)
#   precheck   the pre-build check on a graph TensorRT 8.6 refuses (tests/gpu/test_precheck_gpu.py)
#   drfloat    the dynamic-range route with float layers (tests/gpu/test_dr_float_layers_gpu.py)
#   matrix     the architecture matrix, builds side by side (scripts/gpu/matrix.sh)
#   alone      engines of the matrix rebuilt one at a time, for the pool's quality check
#   archfix    the matrix rows the placement rules changed (yolo11n, yolov10n, yolo26n Q/DQ;
#              precheck.json says if a pair was still dropped) and yolo12n (fp16 + Q/DQ, the dynamic-batch fix)
#   yolo12n    yolo12n's Q/DQ row of the matrix alone (its fp16 engine and check verdict carried)
#   search     the recipe search on TensorRT (scripts/gpu/search.sh, experiment=int8_search_trt)
# Two sessions may run side by side on one GPU (bash scripts/gpu/start.sh s2 bash
# scripts/gpu/session.sh STEP): builds take one of jobs_per_gpu build slots host-wide and a
# timing takes the GPU alone (qexp/trt/execute.py), whichever command they belong to.
set -u
S=${STAGE:-$HOME/stage}
. "$S/env.sh"
out=${QEXP_OUT:-$HOME/qexp-out}
step() { local name=$1; shift; echo "=== $name $(date +%T)"; "$@" > "$S/$name.log" 2>&1;
         echo "exit $?" > "$S/$name.done"; echo "=== $name done $(date +%T)"; }
papers() {
  local rc=0 p
  for p in ultralytics_yolov8n_trt_smoke mmyolo_yolov8n_trt_smoke yolov5s_seeds_smoke; do
    python3 -m qexp.cli "paper=$p" backend=tensorrt tracking=none hydra/launcher=local_gpus \
      "paths.output_dir=$out" || rc=1
  done
  return $rc
}
archfix() {
  local rc=0
  # FP16_MODELS: on another GPU model than the first matrix's H100, every fp16 reference again
  bash scripts/gpu/matrix.sh "model.weights=${FP16_MODELS:-yolo12n.yaml}" quantizer=fp16 \
    "hydra.sweep.dir=$out/sweeps/arch_matrix/fp16-$(date +%H%M%S)" &
  local fp16=$!
  sleep 60  # the long fp16 build takes its slot first: it sets the first wave's length
  bash scripts/gpu/matrix.sh model.weights=yolo11n.yaml,yolov10n.yaml,yolo26n.yaml,yolo12n.yaml \
    quantizer=ptq_trt || rc=1
  wait $fp16 || rc=1
  return $rc
}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(frontier frontier5 papers gputest sweep bench)
for s in "${steps[@]}"; do
  case "$s" in
    frontier) step frontier bash scripts/gpu/frontier.sh ;;
    frontier5) step frontier5 env ROWS=ptq_trt_minmax,ptq_minmax,fp16,trt_minmax,ptq_trt_percentile,topk3,qat,adaround,trt_entropy2 \
                 bash scripts/gpu/frontier.sh model=yolov5n ;;
    papers) step papers papers ;;
    sweep) step sweep bash scripts/gpu/sweep.sh ;;
    calib) step calib env OMP_NUM_THREADS=16 python3 scripts/bench_calibration.py model=yolov8n \
             data.calib.num=128 --device cuda cpu --repeat 2 ;;
    gputest) step gputest python3 -m pytest -q -m gpu -p no:cacheprovider tests/gpu ;;
    precheck) step precheck python3 -m pytest -q -s -m gpu -p no:cacheprovider tests/gpu/test_precheck_gpu.py ;;
    drfloat) step drfloat python3 -m pytest -q -s -m gpu -p no:cacheprovider tests/gpu/test_dr_float_layers_gpu.py ;;
    matrix) step matrix bash scripts/gpu/matrix.sh ;;
    alone) step alone bash scripts/gpu/alone.sh ;;
    archfix) step archfix archfix ;;
    yolo12n) step yolo12n bash scripts/gpu/matrix.sh model.weights=yolo12n.yaml quantizer=ptq_trt ;;
    search) step search bash scripts/gpu/search.sh ;;
    bench) step bench python3 scripts/gpu/bench_build.py --per-gpu 1 --timeout 300 ;;
    *) echo "unknown step $s"; exit 2 ;;
  esac
done
