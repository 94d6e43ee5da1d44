"""Typed config schemas, one dataclass per axis (a plugin's schema extends its axis's).

YAML files under ``conf/<axis>/`` extend these through Hydra's ConfigStore, so a misspelt key,
a value of the wrong type or a choice outside its :class:`~qexp.contracts.Choice` fails when the
config is composed. Bounds (``bounded``) and rules across fields (``rules``) are checked when
:func:`qexp.config.settings.settings_of` turns a composed config into these objects, which
``validate`` does for every job before any model loads; the error names the option.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from qexp.assets import register_resolver
from qexp.contracts import Choice, Precision

register_resolver()  # paths.assets resolves wherever a qexp config does


class OptionError(ValueError):
    """A schema field whose value cannot work; ``settings_of`` adds the axis to ``key``."""

    def __init__(self, key: str, value: Any, why: str) -> None:
        super().__init__(f"{key}={value!r}: {why}")
        self.key, self.value, self.why = key, value, why


def bounded(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A numeric field with bounds (None, where allowed by the type, is always in bounds);
    without ``default`` a field that must be given (an observer's ``params``: the axis holds
    the defaults)."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt})


def added(default: Any) -> Any:
    """A field added after jobs were recorded: while it holds ``default`` it is left out of the
    config hash (and of trained-model cache keys), so those jobs keep their hash and cache
    entries (``settings.drop_added_defaults``); any other value is hashed as usual."""
    return field(default=default, metadata={"added": True})


_BOUNDS = {"ge": (">=", operator.ge), "gt": (">", operator.gt),
           "le": ("<=", operator.le), "lt": ("<", operator.lt)}  # fmt: skip


def _out_of_bounds(value: Any, meta: Any) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    for key, (sign, within) in _BOUNDS.items():
        bound = meta.get(key)
        if bound is not None and not within(value, bound):
            return f"must be {sign} {bound}"
    return None


class Checked:
    """Base of the schemas: ``__post_init__`` checks the ``bounded`` fields, then ``rules``
    (a schema's rules across its fields), raising :class:`OptionError` naming the field."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            why = _out_of_bounds(getattr(self, f.name), f.metadata)
            if why:
                raise OptionError(f.name, getattr(self, f.name), why)
        self.rules()

    def rules(self) -> None:
        """Raise OptionError when fields contradict each other (overridden by schemas)."""


class Export(Choice):
    """The ONNX a torch-side quantizer exports (its route to the backend)."""

    qdq = "qdq"
    dynamic_range = "dynamic_range"
    none = "none"


class Impl(Choice):
    """Whose code calibrates: set by the quantizer choice (ptq, ptq_modelopt, ptq_mqbench)."""

    native = "native"
    modelopt = "modelopt"
    mqbench = "mqbench"


class TrtCalibrator(Choice):
    """TensorRT's own INT8 calibrators (quantizer=trt_builtin); none for every other quantizer."""

    none = "none"
    minmax = "minmax"
    entropy = "entropy"
    entropy2 = "entropy2"
    legacy = "legacy"


class Metric(Choice):
    """What a layer's sensitivity is measured by (ignore=sensitivity_topk)."""

    map = "map"
    mse = "mse"
    cosine = "cosine"
    sqnr = "sqnr"


class Mode(Choice):
    """Sensitivity: each layer quantized alone, or every layer but one."""

    single = "single"
    all_but_one = "all_but_one"


class DataFormat(Choice):
    coco = "coco"  # images + a COCO instances json
    yolo = "yolo"  # an ultralytics data yaml, or images + YOLO txt labels


@dataclass
class ModelConfig(Checked):
    name: str = MISSING
    family: str = "ultralytics"  # a MODEL_FAMILIES name
    weights: str = MISSING  # a path, or an ultralytics name (downloads when online)
    imgsz: int = bounded(640, ge=32)
    # NMS-free heads (YOLOv10's v10Detect, YOLO26): None runs the one-to-one branch where the
    # head has one (as deployed; ultralytics' ``nms=False``), false its one-to-many branch + NMS
    end2end: bool | None = added(None)
    # ultralytics C2f/C3k2: cv1's chunk(2, 1) as two convolutions, one per half of its output
    # channels (exactly equivalent; no Slice for TensorRT to copy), qexp/models/split_c2f.py
    split_c2f: bool = added(False)

    def rules(self) -> None:
        if self.imgsz % 32:
            raise OptionError("imgsz", self.imgsz, "must be a multiple of 32")


@dataclass
class CalibConfig:
    """Where calibration / fine-tuning images come from (disjoint from the eval images)."""

    root: str = "${paths.assets}/coco128"
    images: str = "images/train2017"
    labels: str | None = "labels/train2017"  # YOLO txt labels (QAT needs them)
    num: int = 128
    seed: int = 0


@dataclass
class DataConfig(Checked):
    name: str = MISSING
    format: DataFormat = DataFormat.coco
    root: str = MISSING
    images: str = "images/val2017"
    annotations: str | None = None  # COCO instances json, relative to root
    labels: str | None = None  # YOLO txt label dir, relative to root
    yaml: str | None = None  # ultralytics data yaml (format=yolo)
    max_images: int | None = bounded(None, ge=1)  # first N images (tiny runs, tests)
    rect: bool = False  # ultralytics' rectangular batches; False = fixed square imgsz
    batch: int = bounded(1, ge=1)
    workers: int = bounded(0, ge=0)
    calib: CalibConfig = field(default_factory=CalibConfig)

    def rules(self) -> None:
        if self.calib.num < 1:
            raise OptionError("calib.num", self.calib.num, "must be >= 1")


@dataclass
class QuantizerConfig(Checked):
    name: str = MISSING
    precision: Precision = Precision.int8
    export: Export = Export.qdq  # the ONNX route to the backend (none: the quantizer's own)
    impl: Impl = Impl.native
    w_bits: int = bounded(8, ge=2, le=16)
    a_bits: int = bounded(8, ge=2, le=16)
    per_channel: bool = True
    # where torch work runs (calibration pass, sensitivity, AdaRound, QAT): auto = cuda when
    # torch sees a GPU, else cpu; cpu | cuda | cuda:N (qexp/device.py)
    device: str = "auto"
    IMPL: ClassVar[Impl] = Impl.native  # whose code a quantizer of this schema runs

    def rules(self) -> None:
        from qexp.device import check_device  # imports torch: not for every schema import

        if check_device(self.device):
            raise OptionError("device", self.device, "one of auto, cpu, cuda, cuda:N")
        if self.impl != self.IMPL:
            raise OptionError(
                "impl", str(self.impl), f"quantizer={self.name} is impl={self.IMPL} (ModelOpt's "
                "and MQBench's PTQ are quantizer=ptq_modelopt and quantizer=ptq_mqbench)",
            )  # fmt: skip


@dataclass
class ObserverConfig(Checked):
    """The observer axis: the observer that sets activation ranges, the one that sets weight
    ranges, and the options they read. One node serves both observers, so it holds the options
    of the built-in ones, and their defaults (the one place of them); each observer reads and
    checks only its own (its ``params`` schema, qexp/quant/observers.py: which options, what
    values, no defaults). An observer with options of its own registers a subclass of this
    schema (``OBSERVERS.register(name, schema=...)``), which holds them, for its YAML to extend."""

    name: str = MISSING
    act: str = MISSING  # an OBSERVERS name for activations
    weight: str = "minmax"  # an OBSERVERS name for weights
    percentile: float = 99.99  # percentile
    bins: int = bounded(2048, ge=1)  # calibration histogram bins (every activation observer)
    quant_bins: int = 128  # entropy: TensorRT's 128 quantized bins


@dataclass
class CalibratorConfig(Checked):
    name: TrtCalibrator = MISSING
    cache: bool = True


@dataclass
class IgnoreConfig(Checked):
    name: str = MISSING
    patterns: list[str] = field(default_factory=list)  # globs over module names
    k: int = bounded(0, ge=0)  # sensitivity_topk: layers kept in float
    metric: Metric = Metric.mse  # sensitivity metric
    mode: Mode = Mode.single  # sensitivity: each layer quantized alone | all_but_one
    images: int = bounded(
        16, ge=1
    )  # sensitivity: labelled calibration images each run is scored on
    # sensitivity: rank with this observer (an OBSERVERS name, at its defaults) instead of the
    # job's, so that one ranking serves jobs of every observer (a search's trials); None: the job's
    rank_observer: str | None = added(None)


@dataclass
class BackendConfig(Checked):
    name: str = MISSING
    warmup: int = bounded(10, ge=0)
    iters: int = bounded(50, ge=1)  # timed iterations for latency
    # 0 = this job's share of the cores (qexp/threads.py); N = N threads
    threads: int = bounded(0, ge=0)
    align: bool = True  # compare raw outputs with torch fp32


@dataclass
class TrackingConfig(Checked):
    name: str = MISSING
    uri: str | None = None
    experiment: str = "${experiment_name}"


@dataclass
class PathsConfig:
    output_dir: str = "${oc.env:QEXP_OUTPUT_DIR,outputs}"
    cache_dir: str = "${paths.output_dir}/cache"
    assets: str = "${qexp.assets:}"  # $QEXP_ASSETS, else ../shared/assets beside the repo


@dataclass
class PaperCell:
    """One published number: the row's axis choices, the metric, the value."""

    row: dict[str, str] = field(default_factory=dict)
    metric: str = "map50_95"
    value: float = MISSING
    label: str = ""  # the paper's name for the row where ours stands in for it


class PaperCompare(Choice):
    """How our rows are read against the paper's: their values (same data and weights), or,
    where the data differ (a smoke run on a subset), each row's Δ vs a reference row."""

    value = "value"
    delta = "delta"


@dataclass
class PaperConfig:
    name: str = MISSING
    title: str = ""
    source: str = ""
    needs: str = ""  # data/weights the published numbers need
    tolerance: float = 0.01
    cells: list[PaperCell] = field(default_factory=list)  # compared by value
    # compare=delta: the paper's own numbers on its data (``published_on``), each row's Δ vs
    # the ``delta_row`` row compared with ours on this config's data
    compare: PaperCompare = PaperCompare.value
    delta_row: dict[str, str] = field(default_factory=lambda: {"quantizer": "none"})
    published_on: str = ""
    published: list[PaperCell] = field(default_factory=list)


@dataclass
class Config:
    model: Any = MISSING
    data: Any = MISSING
    quantizer: Any = MISSING
    observer: Any = MISSING
    calibrator: Any = MISSING
    ignore: Any = MISSING
    backend: Any = MISSING
    tracking: Any = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    paper: Any = None
    experiment_name: str = "default"
    seed: int = 0
    resume: bool = True  # skip jobs whose config hash already FINISHED
    log_level: str = "INFO"
