"""Client-side staging for the TensorRT worker: ONNX batch axis, images as .npy, scoring.

Runs in qexp's own process (onnx, torch available), never in the worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qexp import cache

log = logging.getLogger("qexp")
BATCH_DIM = "batch"
_EVAL_IMAGES, _EVAL_INDEX = "images.npy", "index.json"


# -- ONNX: a dynamic batch axis, so one engine holds a profile per batch size ----------------
def static_batch(path: Path) -> int:
    """The input's batch size, or -1 when it is already symbolic."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") else -1


def dynamic_batch(src: Path, dst: Path) -> Path:
    """Copy ``src`` with a symbolic batch axis (no-op copy when it already has one).

    A static export bakes the batch into Reshape shape constants (YOLO heads: ``view(b, no,
    -1)``; yolo12's area attention folds its areas into the batch, ``view(b * k, ...)``, reshapes
    that folded tensor again and unfolds it). A Reshape of a tensor that carries the batch on
    its leading axis (:func:`_batch_led`) keeps it there, k per image: its constant shape gets
    -1 as the leading entry when no other entry is -1, else 0 (ONNX: copy that dim from the
    input) when the leading dim is unchanged; anything else is refused with the node's name.
    Resize sizes that carry the batch become scales (:func:`_resize_by_scales`).
    """
    import onnx  # here, as in static_batch: importing the backend stays cheap (plugins load it)
    from onnx import numpy_helper

    from qexp.models.onnx_fold import static_shapes  # onnx too

    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    model = onnx.load(str(src))
    g = model.graph
    inp = g.input[0].type.tensor_type.shape.dim[0]
    if not inp.HasField("dim_value"):
        onnx.save(model, str(dst))
        return dst
    b0 = int(inp.dim_value)
    static = static_shapes(model)  # before the batch becomes symbolic
    inp.dim_param = BATCH_DIM
    for out in g.output:
        d = out.type.tensor_type.shape.dim
        if len(d) and d[0].HasField("dim_value") and d[0].dim_value == b0:
            d[0].dim_param = BATCH_DIM
    del g.value_info[:]  # intermediate shapes were inferred at the static batch
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    led = _batch_led(g)
    changed = 0
    for n in g.node:
        if n.op_type != "Reshape" or len(n.input) < 2 or n.input[0] not in led:
            continue
        name = n.input[1]
        shape = _constant(name, inits, consts)
        if shape is None:
            continue  # computed at run time (Shape -> Gather ...): already batch-agnostic
        if shape.ndim != 1 or shape.size == 0:
            continue
        rest = shape[1:].tolist()
        data, result = static.get(n.input[0]), static.get(n.output[0])
        allowzero = any(a.name == "allowzero" and a.i for a in n.attribute)
        new = shape.copy()
        if -1 not in rest:
            new[0] = -1  # the leading dim is whatever is left: k per image times the batch
        elif data and result and data[0] == result[0] and not allowzero:
            new[0] = 0
        else:
            raise ValueError(
                f"{src}: cannot make Reshape {n.name} batch-agnostic (shape {shape.tolist()} "
                f"of a {data} tensor): its leading dim changes and another dim is -1"
            )
        if np.array_equal(new, shape):
            continue
        tensor = numpy_helper.from_array(new.astype(shape.dtype), f"{name}_dynbatch_{changed}")
        g.initializer.append(tensor)  # a fresh constant: the old one may have other users
        n.input[1] = tensor.name
        changed += 1
    resized = _resize_by_scales(g, static, inits, consts, b0)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    dead = [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]
    for n in dead:  # the shape constants replaced above
        g.node.remove(n)
    onnx.checker.check_model(model)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)
    log.info(
        "%s: batch axis made dynamic (%d reshapes, %d resizes rewritten)",
        dst.name,
        changed,
        resized,
    )
    return dst


def _batch_led(g: Any) -> set[str]:
    """The tensors that carry the batch on their leading axis: the image input and everything
    computed from it, but the shape arithmetic (Shape/Size and what follows from them only) and
    the shape operand of a Reshape/Expand/Resize, which are vectors, not batches. YOLO graphs
    never move the batch off axis 0, which is what a Reshape rewrite relies on."""
    led = {g.input[0].name}
    data_only = {"Reshape": 1, "Expand": 1, "Resize": 1, "Tile": 1}  # op -> data inputs
    for n in g.node:  # ONNX nodes are in topological order
        if n.op_type in ("Shape", "Size"):
            continue
        inputs = n.input[: data_only.get(n.op_type, len(n.input))]
        if any(i in led for i in inputs):
            led.update(n.output)
    return led


def _constant(name: str, inits: dict, consts: dict) -> np.ndarray | None:
    """The value of a graph constant (an initializer or a Constant node's output), else None."""
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    if name in consts:
        return numpy_helper.to_array(consts[name].attribute[0].t)
    return None


def _resize_by_scales(
    g: Any, static: dict[str, list[int]], inits: dict, consts: dict, b0: int
) -> int:
    """A Resize with constant ``sizes`` (torch's static export of nn.Upsample, e.g. classic
    YOLOv5's neck: sizes (1, 128, 40, 40)) bakes the batch in: at batch 32 TensorRT's engine still
    makes one image and the next Concat (or the output copy) breaks. Constant ``scales`` (output
    over input, 1 on the batch axis) say the same at every batch."""
    from onnx import numpy_helper

    n_done = 0
    for n in g.node:
        if n.op_type != "Resize" or len(n.input) < 4 or not n.input[3]:
            continue
        name = n.input[3]
        sizes = _constant(name, inits, consts)
        shape = static.get(n.input[0])
        if sizes is None or shape is None or len(shape) != sizes.size or int(sizes[0]) != b0:
            continue
        scales = np.array([s / d for s, d in zip(sizes.tolist(), shape, strict=True)], np.float32)
        tensor = numpy_helper.from_array(scales, f"{name}_dynbatch_scales")
        g.initializer.append(tensor)
        n.input[2] = tensor.name
        del n.input[3]  # sizes and scales are exclusive
        n_done += 1
    return n_done


# -- the dynamic-range route: float layers TensorRT must be told are float -------------------
# Ops TensorRT fuses into the convolution before them (PWN: SiLU's Sigmoid and Mul, ...)
_POINTWISE = frozenset({"Sigmoid", "Mul", "Add", "Sub", "Div", "Relu", "LeakyRelu", "Tanh",
                        "HardSigmoid", "HardSwish", "Clip", "Elu", "Softplus", "Neg"})  # fmt: skip
_CONV = frozenset({"Conv", "ConvTranspose"})


def float_islands(onnx_path: Path, ranges_path: Path) -> list[str]:
    """The nodes of a dynamic-range graph to build in float under a precision constraint: each
    convolution with a pointwise tail that TensorRT fuses into it (SiLU's Sigmoid and Mul, up
    to the first tensor with a range), where the fused layer's input or output has no range,
    with that tail.

    TensorRT 8.6's implicit INT8 (dynamic ranges, no calibrator) fuses such a Conv + PWN into
    one layer and then finds no kernel for it unless both of its ends have a range: measured on
    an H100 with yolov8n ptq_dr, "Could not find any implementation for node /model.1/conv/Conv
    + PWN(...)" with model.0 and model.1 kept float (neither end ranged), and for
    /model.22/cv3.0/cv3.0.1 when the conv after it was kept float (its output unranged). A
    layer constrained to float runs float and reformats meet the INT8 layers around it. A conv
    without a tail (the head's last convs, DFL) builds either way and is left to TensorRT."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    ranges = set(json.loads(Path(ranges_path).read_text()))
    g = model.graph
    consts = {i.name for i in g.initializer}
    consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    readers: dict[str, list[Any]] = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    found: list[str] = []
    for n in g.node:
        if n.op_type not in _CONV:
            continue
        island, todo, ends = [n], list(n.output), []
        while todo:
            t = todo.pop()
            tail = [] if t in ranges else [c for c in readers.get(t, []) if c.op_type in _POINTWISE]
            if not tail:
                ends.append(t)  # what leaves the fused layer: read by a non-pointwise op
                continue
            for c in tail:
                if all(c is not m for m in island):
                    island.append(c)
                    todo.extend(c.output)
        inputs = [t for t in n.input[:1] if t not in consts]
        unranged = [t for t in [*inputs, *ends] if t not in ranges]
        if len(island) > 1 and unranged:
            found += [m.name for m in island if m.name and m.name not in found]
    return found


# -- images: exact uint8 when the preprocessing allows it ------------------------------------
def image_key(image: np.ndarray) -> str:
    """Content key of one float 0..1 CHW image (what predict_fn receives back)."""
    q = np.rint(np.asarray(image, dtype=np.float32) * 255.0).clip(0, 255).astype(np.uint8)
    return hashlib.sha1(q.tobytes()).hexdigest()


def _exact_uint8(x: np.ndarray) -> bool:
    return bool(np.abs(x * 255.0 - np.rint(x * 255.0)).max() < 1e-3)


def _images_of(batch: Any) -> np.ndarray:
    return np.asarray(batch.images if hasattr(batch, "images") else batch, dtype=np.float32)


def eval_images(data: Any, imgsz: int, batch: int, out_dir: Path) -> tuple[Path, dict[str, int]]:
    """All eval images as one .npy (uint8 when exact, else float32) + {image key: row}, in the
    cache entry ``out_dir`` (:mod:`qexp.cache`: parallel jobs of a sweep write it once)."""
    path, meta = out_dir / _EVAL_IMAGES, out_dir / _EVAL_INDEX

    def build(tmp: Path) -> list[str]:
        _write_eval_images(data, imgsz, batch, tmp)
        return [_EVAL_IMAGES, _EVAL_INDEX]

    cache.cached(out_dir, build, {"kind": "trt_eval_images"}, _adopt_v1(_EVAL_IMAGES, _EVAL_INDEX))
    return path, json.loads(meta.read_text())


def _adopt_v1(*names: str) -> cache.Adopt:
    """Entries staged before the shared cache protocol: whole when its last file is there."""
    return lambda entry: {} if all((entry / n).is_file() for n in names) else None


def _write_eval_images(data: Any, imgsz: int, batch: int, out_dir: Path) -> None:
    # uint8 keeps 206 COCO images at 640 in 250 MB instead of 1 GB, and is exact for the
    # letterboxed 0..255 pixels / 255 our preprocessing produces; anything else stays float32
    chunks: list[np.ndarray] = []
    exact = True
    index: dict[str, int] = {}  # identical images share their first row (same output)
    n = 0
    for b in data.batches(imgsz, batch, 32, rect=False):  # engines are static imgsz
        im = _images_of(b)
        for x in im:
            index.setdefault(image_key(x), n)
            n += 1
        if exact and not _exact_uint8(im):
            exact = False
            chunks = [c.astype(np.float32) / np.float32(255.0) for c in chunks]
        chunks.append(np.rint(im * 255.0).astype(np.uint8) if exact else im)
    stored = np.concatenate(chunks) if chunks else np.zeros((0, 3, imgsz, imgsz), np.uint8)
    np.save(out_dir / _EVAL_IMAGES, stored)
    (out_dir / _EVAL_INDEX).write_text(json.dumps(index))


def calib_images(data: Any, imgsz: int, num: int, out_dir: Path, chunk: int = 16) -> Path:
    """Calibration images as .npy chunks (B, 3, S, S) for TensorRT's calibrators, in the cache
    entry ``out_dir`` (trt_builtin jobs of a sweep share these images)."""

    def build(tmp: Path) -> list[str]:
        return _write_calib_images(data, imgsz, num, tmp, chunk)

    cache.cached(out_dir, build, {"kind": "trt_calib_images"}, _adopt_v1("done"))
    return out_dir


def _write_calib_images(data: Any, imgsz: int, num: int, out_dir: Path, chunk: int) -> list[str]:
    images = np.concatenate([np.asarray(x, np.float32) for x in data.calibration(imgsz, num)])
    stored = np.rint(images * 255.0).astype(np.uint8) if _exact_uint8(images) else images
    names = []
    for i in range(0, len(stored), chunk):
        names.append(f"calib_{i // chunk:04d}.npy")
        np.save(out_dir / names[-1], stored[i : i + chunk])
    return names


# -- scoring: the engine's raw outputs through the shared decode + COCO eval -----------------
def lookup_predict(raw: np.ndarray, index: dict[str, int]) -> Callable[[np.ndarray], np.ndarray]:
    """predict_fn for the shared evaluate(): images -> the engine's raw rows for those images."""

    def predict(images: np.ndarray) -> np.ndarray:
        rows = []
        for im in np.asarray(images):
            key = image_key(im)
            if key not in index:
                raise KeyError("an eval image the engine never saw (eval images changed?)")
            rows.append(index[key])
        return np.ascontiguousarray(raw[rows], dtype=np.float32)

    return predict


def torch_reference(detector: Any, module: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The Deployable's torch module (float, or the fake-quant twin) as the alignment reference:
    on the GPU when there is one (with TF32 off: a reference must be real fp32), else the CPU."""
    import copy

    import torch

    if not torch.cuda.is_available():
        return detector.predict_fn(module)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    m = copy.deepcopy(module).float().eval().cuda()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return (
                detector.raw(m(torch.from_numpy(np.ascontiguousarray(x)).cuda()))
                .float()
                .cpu()
                .numpy()
            )

    return predict


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray],
    detector: Any,
    data: Any,
    imgsz: int,
    batch: int,
    job: Any = None,
    reference: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """map50_95, map50, eval_s (and with a reference: align_*, torch/map50_95, torch/map50)
    through the shared evaluation loop of qexp.eval."""
    from qexp.eval import evaluate as shared_evaluate  # loads torch: only when scoring

    res = shared_evaluate(predict, detector, data, imgsz, batch, job=job, reference=reference)
    out = {k: float(v) for k, v in res.items() if k.startswith(("map", "align_")) or k == "eval_s"}
    for k in ("map50_95", "map50"):
        if f"ref_{k}" in res:
            out[f"torch/{k}"] = float(res[f"ref_{k}"])
    return out
