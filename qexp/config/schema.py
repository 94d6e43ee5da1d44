"""Typed config schemas, one dataclass per axis.

YAML files under ``conf/<axis>/`` extend these (or a plugin's subclass) through Hydra's
ConfigStore, so a misspelt key fails when the config is composed. Values that depend on the
registries (observer names, families) are checked by :func:`qexp.config.validate.validate`
right after composition, before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from qexp.assets import register_resolver

register_resolver()  # paths.assets resolves wherever a qexp config does


@dataclass
class ModelConfig:
    name: str = MISSING
    family: str = "ultralytics"  # a MODEL_FAMILIES name
    weights: str = MISSING  # a path, or an ultralytics name (downloads when online)
    imgsz: int = 640


@dataclass
class CalibConfig:
    """Where calibration / fine-tuning images come from (disjoint from the eval images)."""

    root: str = "${paths.assets}/coco128"
    images: str = "images/train2017"
    labels: str | None = "labels/train2017"  # YOLO txt labels (QAT needs them)
    num: int = 128
    seed: int = 0


@dataclass
class DataConfig:
    name: str = MISSING
    format: str = "coco"  # coco: images + instances json | yolo: an ultralytics data yaml
    root: str = MISSING
    images: str = "images/val2017"
    annotations: str | None = None  # COCO instances json, relative to root
    labels: str | None = None  # YOLO txt label dir, relative to root
    yaml: str | None = None  # ultralytics data yaml (format=yolo)
    max_images: int | None = None  # first N images (tiny runs, tests)
    rect: bool = False  # ultralytics' rectangular batches; False = fixed square imgsz
    batch: int = 1
    workers: int = 0
    calib: CalibConfig = field(default_factory=CalibConfig)


@dataclass
class QuantizerConfig:
    name: str = MISSING
    precision: str = "int8"  # fp32 | fp16 | int8
    export: str = "qdq"  # qdq | dynamic_range | none (the ONNX route to the backend)
    impl: str = "native"  # native | modelopt | mqbench
    w_bits: int = 8
    a_bits: int = 8
    per_channel: bool = True
    # where torch work runs (calibration pass, sensitivity, AdaRound, QAT): auto = cuda when
    # torch sees a GPU, else cpu; cpu | cuda | cuda:N (qexp/device.py)
    device: str = "auto"


@dataclass
class ObserverConfig:
    name: str = MISSING
    act: str = MISSING  # an OBSERVERS name for activations
    weight: str = "minmax"  # an OBSERVERS name for weights
    percentile: float = 99.99
    bins: int = 2048
    quant_bins: int = 128  # entropy: TensorRT's 128 quantized bins


@dataclass
class CalibratorConfig:
    name: str = MISSING  # none | minmax | entropy | entropy2 | legacy (TensorRT's own)
    cache: bool = True


@dataclass
class IgnoreConfig:
    name: str = MISSING
    patterns: list[str] = field(default_factory=list)  # globs over module names
    k: int = 0  # sensitivity_topk: layers kept in float
    metric: str = "mse"  # sensitivity metric: map | mse | cosine | sqnr
    mode: str = "single"  # sensitivity: each layer quantized alone | all_but_one
    images: int = 16  # sensitivity: labelled calibration images each run is scored on


@dataclass
class BackendConfig:
    name: str = MISSING
    warmup: int = 10
    iters: int = 50  # timed iterations for latency
    threads: int = 0  # 0 = this job's share of the cores (qexp/threads.py); N = N threads
    align: bool = True  # compare raw outputs with torch fp32


@dataclass
class TrackingConfig:
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


@dataclass
class PaperConfig:
    name: str = MISSING
    title: str = ""
    source: str = ""
    needs: str = ""  # data/weights the published numbers need
    tolerance: float = 0.01
    cells: list[PaperCell] = field(default_factory=list)


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
