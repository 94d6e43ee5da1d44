#!/usr/bin/env bash
# On the GPU machine, started detached by `bash scripts/gpu/start.sh session`: everything a
# device session measures, in order of importance, each step's log in $STAGE/<step>.log and a
# $STAGE/<step>.done marker, so scripts/gpu/wait.sh <step> can follow any of them:
#   sweep   the 8-row TensorRT sweep, one command, one job per GPU (scripts/gpu/sweep.sh)
#   calib   the calibration pass on CUDA vs CPU (scripts/bench_calibration.py)
#   gputest the GPU tests: calibration on CUDA = CPU pass, the serving worker
#   bench   builder levers (scripts/gpu/bench_build.py)
set -u
S=${STAGE:-$HOME/stage}
. "$S/env.sh"
step() { local name=$1; shift; echo "=== $name $(date +%T)"; "$@" > "$S/$name.log" 2>&1;
         echo "exit $?" > "$S/$name.done"; echo "=== $name done $(date +%T)"; }
step sweep bash scripts/gpu/sweep.sh
step calib env OMP_NUM_THREADS=16 python3 scripts/bench_calibration.py model=yolov8n \
  data.calib.num=128 --device cuda cpu --repeat 2
step gputest python3 -m pytest -q -m gpu -p no:cacheprovider \
  tests/gpu/test_calibration_device.py "tests/gpu/test_worker_gpu.py::test_a_serving_worker_shares_its_timing_cache_between_builds"
step bench python3 scripts/gpu/bench_build.py --per-gpu 1 --timeout 300
