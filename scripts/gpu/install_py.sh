#!/usr/bin/env bash
# On the GPU machine, from the repo root, in a call that carries .gpu-py/stage.tar:
#   bash scripts/gpu/install_py.sh && . ~/py/env.sh
# Installs the wheels of scripts/gpu/pack_py.sh beside the image's torch and writes ~/py/env.sh.
set -euo pipefail
S=${PY_STAGE:-$HOME/py}
mkdir -p "$S"
tar -xf .gpu-py/stage.tar -C "$S"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$S/site" "$S"/wheels/*.whl
cat > "$S/env.sh" <<ENV
export PYTHONPATH=$S/site:$(pwd)
export QEXP_ASSETS=$S/assets
export QEXP_HOME=$S/home
export PYTHONUNBUFFERED=1
ENV
. "$S/env.sh"
python3 -c 'import torch, ultralytics, hydra, qexp; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "ultralytics", ultralytics.__version__)'
