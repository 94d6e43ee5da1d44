"""What differs between TensorRT 8.6, 10.x and 11.x, in one place (feature tests, not versions).

- 8.6: implicit-batch flag still needed (EXPLICIT_BATCH); calibrators and FP16/INT8 flags exist.
- 10.x: explicit batch is the only mode (the flag is deprecated); calibrators deprecated (10.1).
- 11.x: IInt8*Calibrator, BuilderFlag.INT8/FP16 and dynamic ranges are gone: explicit Q/DQ in a
  strongly typed network is the only INT8 route.
Everything here asks ``getattr`` whether a feature exists, so a new minor release that keeps or
drops one is handled without a version table.
"""

from __future__ import annotations

from typing import Any

from qexp.trt.protocol import CALIBRATOR_CLASSES


class Unsupported(RuntimeError):
    """The installed TensorRT lacks what the request needs (a SKIP, not a failure)."""


def version(trt: Any) -> str:
    return str(getattr(trt, "__version__", "unknown"))


def major(trt: Any) -> int:
    try:
        return int(version(trt).split(".")[0])
    except ValueError:
        return 0


def capabilities(trt: Any) -> dict[str, Any]:
    """What this TensorRT can do, for the client's check() (JSON-able)."""
    flags = getattr(trt, "BuilderFlag", None)
    ncf = getattr(trt, "NetworkDefinitionCreationFlag", None)
    return {
        "fp16_flag": hasattr(flags, "FP16"),
        "int8_flag": hasattr(flags, "INT8"),
        "strongly_typed": hasattr(ncf, "STRONGLY_TYPED"),
        "calibrators": sorted(k for k, cls in CALIBRATOR_CLASSES.items() if hasattr(trt, cls)),
        "dynamic_range": hasattr(getattr(trt, "ITensor", None), "set_dynamic_range"),
        "opt_level": hasattr(getattr(trt, "IBuilderConfig", None), "builder_optimization_level"),
        "io_tensors": hasattr(getattr(trt, "ICudaEngine", None), "num_io_tensors"),
    }


def unsupported_reason(
    caps: dict[str, Any], precision: str, route: str, calibrator: str | None, ver: str
) -> str | None:
    """Why this TensorRT cannot build the request, or None (shared by client check and worker)."""
    if not caps.get("io_tensors"):
        return f"TensorRT {ver} predates the named-tensor API (need >= 8.5)"
    if precision == "fp16" and not caps.get("fp16_flag"):
        return (
            f"TensorRT {ver} has no BuilderFlag.FP16 (removed in 11): export an fp16 ONNX instead"
        )
    if route in ("trt_builtin", "dynamic_range") and not caps.get("int8_flag"):
        return f"TensorRT {ver} has no implicit INT8 (removed in 11): use quantizer.export=qdq"
    if route == "trt_builtin" and calibrator not in caps.get("calibrators", []):
        cls = CALIBRATOR_CLASSES.get(str(calibrator), str(calibrator))
        return f"TensorRT {ver} has no {cls} (calibrators were removed in 11): use quantizer=ptq"
    if route == "dynamic_range" and not caps.get("dynamic_range"):
        return f"TensorRT {ver} has no ITensor.set_dynamic_range: use quantizer.export=qdq"
    if route == "qdq" and not (caps.get("int8_flag") or caps.get("strongly_typed")):
        return f"TensorRT {ver} can build Q/DQ networks neither with INT8 nor strongly typed"
    return None


def network_flags(trt: Any, strongly_typed: bool = False) -> int:
    ncf = trt.NetworkDefinitionCreationFlag
    flags = 0
    # explicit batch is the default (and the flag deprecated) from 10 on; 8.6 needs it
    if major(trt) < 10 and hasattr(ncf, "EXPLICIT_BATCH"):
        flags |= 1 << int(ncf.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(ncf.STRONGLY_TYPED)
    return flags


def set_flag(trt: Any, config: Any, name: str) -> bool:
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        return False
    config.set_flag(flag)
    return True


def set_workspace(trt: Any, config: Any, nbytes: int) -> None:
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
    else:  # before 8.4
        config.max_workspace_size = nbytes


def set_opt_level(config: Any, level: int | None) -> bool:
    if level is None or not hasattr(config, "builder_optimization_level"):
        return False
    config.builder_optimization_level = int(level)
    return True


def set_tactic_sources(trt: Any, config: Any, names: list[str]) -> list[str]:
    """Enable exactly ``names`` (TacticSource members this TensorRT has); returns the ones set.
    E.g. dropping CUBLAS/CUDNN where those libraries are stubs, or JIT_CONVOLUTIONS to skip
    compiling fused kernels at build time."""
    ts = getattr(trt, "TacticSource", None)
    if ts is None or not hasattr(config, "set_tactic_sources"):
        return []
    have = [n for n in names if hasattr(ts, n)]
    mask = 0
    for n in have:
        mask |= 1 << int(getattr(ts, n))
    config.set_tactic_sources(mask)
    return have


def set_preview_features(trt: Any, config: Any, names: list[str]) -> None:
    """Enable each ``trt.PreviewFeature`` member named; one this TensorRT lacks is Unsupported."""
    pf = getattr(trt, "PreviewFeature", None)
    for n in names:
        if pf is None or not hasattr(pf, n) or not hasattr(config, "set_preview_feature"):
            raise Unsupported(f"TensorRT {version(trt)} has no PreviewFeature.{n}")
        config.set_preview_feature(getattr(pf, n), True)


def set_detailed_profiling(trt: Any, config: Any) -> None:
    pv = getattr(trt, "ProfilingVerbosity", None)
    if pv is not None:
        config.profiling_verbosity = getattr(pv, "DETAILED", getattr(pv, "VERBOSE", pv.DEFAULT))


def set_dynamic_range(tensor: Any, amax: float) -> bool:
    if hasattr(tensor, "set_dynamic_range"):
        return bool(tensor.set_dynamic_range(-float(amax), float(amax)))
    tensor.dynamic_range = (-float(amax), float(amax))
    return True


def constrain_float(trt: Any, network: Any, config: Any, names: list[str], fp16: bool) -> list[str]:
    """Build the layers named (ONNX node names, as the parser names layers) in fp16 (fp32 when
    ``fp16`` is off) with float outputs, under a preferred precision constraint; returns the
    names found. A layer that reads float and writes a ranged tensor then writes float, and a
    reformat quantizes it for its INT8 consumer (build.py, the dynamic-range route)."""
    wanted, found = set(names), []
    dtype = trt.float16 if fp16 else trt.float32
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name not in wanted:
            continue
        layer.precision = dtype
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in (trt.float32, trt.float16):
                layer.set_output_type(j, dtype)
        found.append(layer.name)
    if found and not set_flag(trt, config, "PREFER_PRECISION_CONSTRAINTS"):
        set_flag(trt, config, "STRICT_TYPES")  # before 8.2
    return found


def calibrator_base(trt: Any, kind: str) -> type:
    cls = getattr(trt, CALIBRATOR_CLASSES[kind], None)
    if cls is None:
        raise Unsupported(f"TensorRT {version(trt)} has no {CALIBRATOR_CLASSES[kind]}")
    return cls


def engine_io(engine: Any, trt: Any) -> tuple[list[str], list[str]]:
    """(input names, output names) in engine order, with the named-tensor API (8.5+)."""
    inputs: list[str] = []
    outputs: list[str] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        (inputs if mode == trt.TensorIOMode.INPUT else outputs).append(name)
    return inputs, outputs


def nptype(trt: Any, dtype: Any) -> Any:
    return trt.nptype(dtype)


def host_bytes(blob: Any) -> bytes:
    """IHostMemory (8.x/10.x) or bytes -> bytes."""
    if isinstance(blob, (bytes, bytearray)):
        return bytes(blob)
    return bytes(memoryview(blob))
