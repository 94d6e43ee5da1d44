#!/usr/bin/env bash
# Here (a CPU machine with internet to package registries), from the repo root:
#   bash scripts/gpu/pack.sh
# Builds .gpu-stage/ (git-ignored): everything the GPU machine lacks, as one tar split into
# parts that each fit one device call next to the repo (the carried tree is <= 64 MiB):
#   - TensorRT 8.6 (cp310): its libraries + Python package only, zstd --long (0.5 GB, 12 s),
#     from .device-stage/ of ../shared/device/prepare-trt.sh
#   - the Python 3.10 runtime, its numpy, the cuBLAS/cuDNN stub libraries (same source)
#   - cp312 wheels the GPU image lacks for qexp's main process (ultralytics, hydra, ...)
#   - the shared assets a sweep reads (coco_val, coco128, the yolov8n checkpoint)
# Then follow docs/tensorrt.md ("Running on the GPU machine").
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
stage=.gpu-stage
part_mib=${PART_MIB:-56}  # + the repo (~3 MiB, growing) must stay under 64 MiB a call
assets=${QEXP_ASSETS:-$root/../shared/assets}
src=${DEVICE_STAGE:-.device-stage}
grep -qx '/.gpu-stage/' .git/info/exclude 2>/dev/null || echo '/.gpu-stage/' >> .git/info/exclude
[ -f "$src/boot/py310.tar.xz" ] || { echo "run ../shared/device/prepare-trt.sh first ($src/boot missing)"; exit 1; }
work=$stage/work
mkdir -p "$work/bundle/wheels"
rm -f "$stage"/part.* "$stage"/bundle.sha256

# TensorRT's libraries, zstd --long (12 s on 2 cores; xz -6 took ~500 s for 5 % less), kept in
# ~/.cache/qexp-gpu-stage by the wheel's sha256 so that a later session on this machine reuses it.
# Every library of the 8.6.0 wheel is needed: tensorrt.so links libnvparsers and the plugin
# library, the ONNX parser links the plugin library (checked with readelf -d).
sha=$(cat "$src/boot/trt.sha256")
keep=${QEXP_STAGE_CACHE:-$HOME/.cache/qexp-gpu-stage}/trt-$sha.tar.zst
if [ ! -f "$keep" ]; then
  mkdir -p "$(dirname "$keep")"
  rm -rf "$work/trt" && mkdir -p "$work/trt"
  unzip -q -o "$src"/dl/tensorrt-*.whl 'tensorrt/*' -d "$work/trt"
  tar -C "$work/trt" -cf - tensorrt | zstd -q -T0 -3 --long=31 -o "$keep.tmp"
  mv "$keep.tmp" "$keep"
  rm -rf "$work/trt"
fi
cp "$keep" "$work/trt.tar.zst"
# zstd for the GPU machine, in case its image lacks it (glibc >= 2.34 there, as Python 3.10's)
mkdir -p "$work/bundle/zstd"
cp "$(command -v zstd)" "$work/bundle/zstd/"
for lib in $(ldd "$(command -v zstd)" | awk '/=> \//{print $3}' | grep -v -E 'libc\.so|ld-linux'); do
  cp -L "$lib" "$work/bundle/zstd/"
done
cp "$src"/boot/py310.tar.xz "$src"/boot/py310.prefix "$src"/boot/numpy-*.whl "$src"/boot/*.so.* "$work/bundle/"

bash scripts/gpu/wheels.sh "$work/bundle/wheels"

tar -C "$assets" -cf "$work/bundle/assets.tar" coco_val coco128 weights/yolov8n-coco-from-ovint8.pt \
  weights/yolov5n-v6.1-coco.pt  # both shared models: the INT8 frontier runs yolov8n and yolov5n

# what earlier leases brought home (scripts/gpu/home.sh): engines and records, so that this lease
# rebuilds no engine it already has and a sweep resumes where it stopped
carry=${QEXP_STAGE_CACHE:-$HOME/.cache/qexp-gpu-stage}/carry
rm -f "$work/bundle/carry.tar"
if [ "${CARRY:-1}" = 1 ] && [ -d "$carry" ] && [ -n "$(ls -A "$carry")" ]; then
  tar -C "$carry" -cf "$work/bundle/carry.tar" .
  echo "carrying $(find "$carry" -name engine.plan | wc -l) engines, $(find "$carry" -name result.json | wc -l) records (CARRY=0: none)"
fi

tar -C "$work" -cf - bundle trt.tar.zst | split -b "${part_mib}M" -d -a 2 - "$stage/part."
cat "$stage"/part.* | sha256sum | cut -d' ' -f1 > "$stage/bundle.sha256"
echo "parts: $(ls $stage/part.* | wc -l) x <= ${part_mib} MiB; bundle sha256 $(cat $stage/bundle.sha256)"
du -ch $stage/part.* | tail -1
