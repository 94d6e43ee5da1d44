#!/usr/bin/env bash
# On the GPU machine, from the repo root, once every part sits in $STAGE (default ~/stage):
#   bash scripts/gpu/install.sh
# Unpacks the bundle of scripts/gpu/pack.sh and writes $STAGE/env.sh (TRT_PYTHON, TRT_PYTHONPATH,
# TRT_LD_LIBRARY_PATH for the worker; PYTHONPATH and QEXP_ASSETS for qexp's own process).
set -euo pipefail
S=${STAGE:-$HOME/stage}
repo=$(pwd)
want=$(cat .gpu-stage/bundle.sha256)
cd "$S"
cat part.* > bundle.tar
got=$(sha256sum bundle.tar | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "bundle checksum mismatch (missing part?): have $(ls part.*)"; exit 1; }
rm -f part.*
tar -xf bundle.tar && rm bundle.tar
prefix=$(cat bundle/py310.prefix)  # the runtime's rpath wants its build prefix
mkdir -p "$(dirname "$prefix")" site lib py312 assets
[ -x "$prefix/bin/python3.10" ] || tar -xJf bundle/py310.tar.xz -C "$(dirname "$prefix")"
unzstd=(zstd); command -v zstd >/dev/null || unzstd=(env LD_LIBRARY_PATH=bundle/zstd bundle/zstd/zstd)
"${unzstd[@]}" -q -d --long=31 -c trt.tar.zst | tar -xf - -C site
python3 -m zipfile -e bundle/numpy-*.whl site
cp bundle/*.so.* lib/
python3 -m pip install -q --no-index --no-deps --no-compile --target "$S/py312" bundle/wheels/*.whl
tar -xf bundle/assets.tar -C assets
# engines and records of earlier leases (pack.sh's carry): into the output dir the scripts use
if [ -f bundle/carry.tar ]; then mkdir -p "${QEXP_OUT:-$HOME/qexp-out}" && tar -xf bundle/carry.tar -C "${QEXP_OUT:-$HOME/qexp-out}"; fi
rm -rf bundle trt.tar.zst
cudart=$(ldconfig -p | awk '/libcudart\.so /{print $NF; exit}')
# else the CUDA runtime that PyTorch's pip packages bring (nvidia/cu13/lib or nvidia/cuda_runtime/lib)
[ -n "$cudart" ] || cudart=$(python3 -c 'import glob,nvidia,os;d=list(nvidia.__path__)[0];print(sorted(glob.glob(d+"/cu*/lib/libcudart.so*")+glob.glob(d+"/cuda_runtime/lib/libcudart.so*"))[0])' 2>/dev/null || true)
cat > "$S/env.sh" <<ENV
export TRT_PYTHON=$prefix/bin/python3.10
export TRT_PYTHONPATH=$S/site
export TRT_LD_LIBRARY_PATH=$S/lib:$S/site/tensorrt${cudart:+:$(dirname "$cudart")}
export QEXP_CUDART=${cudart}
export PYTHONPATH=$S/py312:$repo
export QEXP_ASSETS=$S/assets
export QEXP_HOME=$S/home
export PYTHONUNBUFFERED=1
ENV
. "$S/env.sh"
cd "$repo"
LD_LIBRARY_PATH=$TRT_LD_LIBRARY_PATH PYTHONPATH=$TRT_PYTHONPATH:$repo $TRT_PYTHON -m qexp.trt.worker --probe
