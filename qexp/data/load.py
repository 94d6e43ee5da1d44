"""The evaluation set a ``data`` config describes: images (COCO json or YOLO labels), their
ground truth and the calibration split, with the images that cannot be read skipped and named."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from qexp.data.calibration import CalibSet
from qexp.data.dataset import EvalDataset, make_items
from qexp.data.ground_truth import LabelError, load_coco_json
from qexp.data.sources import coco_source, under, yaml_source, yolo_source

if TYPE_CHECKING:
    from qexp.config.schema import DataConfig
    from qexp.job import Job

log = logging.getLogger("qexp")


def _as_dict(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        d = OmegaConf.to_container(cfg, resolve=True)
    elif dataclasses.is_dataclass(cfg):
        d = dataclasses.asdict(cfg)  # type: ignore[arg-type]
    else:
        d = dict(cfg)
    assert isinstance(d, dict)
    return {str(k): v for k, v in d.items()}


def _image_ids(images: list[Path]) -> list[int]:
    """COCO-style numeric stems where they are unique numbers (as ultralytics), else 1..N."""
    stems = [p.stem for p in images]
    if all(s.isdigit() for s in stems) and len(set(stems)) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(images) + 1))


def load_eval_data(cfg_data: DictConfig | DataConfig | dict, job: Job | None = None) -> EvalDataset:
    """Build the evaluation set a ``data`` config describes (paths relative to ``root``)."""
    c = _as_dict(cfg_data)
    fmt = c.get("format", "coco")
    root = Path(str(c.get("root") or "."))
    if c.get("yaml") is None and not root.is_dir():
        raise FileNotFoundError(f"data.root not found: {root}")
    skipped: list[tuple[str, str]] = []

    def skip(path: Path, why: str) -> None:
        log.warning("skipping image %s: %s", path, why)
        skipped.append((str(path), why))

    coco = None
    if fmt == "coco":
        src = coco_source(root, c.get("images") or "images/val2017", c.get("annotations"))
        assert src.annotations is not None
        coco = load_coco_json(src.annotations)
        by_name = {im["file_name"]: im for im in coco["images"]}
        known = [p for p in src.images if p.name in by_name]
        if len(known) < len(src.images):
            log.warning(
                "%d images under %s are not in %s; they are not evaluated",
                len(src.images) - len(known),
                src.images[0].parent,
                src.annotations.name,
            )
        if not known:
            raise LabelError(f"no image under {root} is listed in {src.annotations}")
        if c.get("max_images"):
            known = known[: int(c["max_images"])]
        items = make_items(known, None, [int(by_name[p.name]["id"]) for p in known], skip)
    elif fmt == "yolo":
        if c.get("yaml"):
            in_root = under(root, c["yaml"])
            src = yaml_source(str(in_root) if in_root and in_root.is_file() else c["yaml"])
        else:
            if not c.get("labels"):
                raise ValueError(
                    "data.format=yolo needs data.labels (a YOLO label dir) or data.yaml"
                )
            src = yolo_source(root, c.get("images") or "images", c.get("labels"))
        files = src.images[: int(c["max_images"])] if c.get("max_images") else src.images
        labs = src.label_files[: len(files)] if src.label_files else None
        items = make_items(files, labs, _image_ids(files), skip)
    else:
        raise ValueError(f"data.format={fmt!r}: must be coco or yolo")
    if not items:
        raise FileNotFoundError(f"data {c.get('name')}: no readable image under {root}")

    cal = c.get("calib") or {}
    cal_root = Path(str(cal.get("root") or root))
    cal_images = under(cal_root, cal.get("images") or "images")
    assert cal_images is not None
    calib = CalibSet(
        images_dir=cal_images,
        labels_dir=under(cal_root, cal.get("labels")),
        num=int(cal.get("num") or 128),
        seed=int(cal.get("seed") or 0),
    )
    data = EvalDataset(
        name=str(c.get("name") or root.name),
        items=items,
        calib=calib,
        coco=coco,
        names=src.names,
        rect=bool(c.get("rect", False)),
        batch=int(c.get("batch") or 1),
        skipped=skipped,
    )
    if job is not None:
        job.info["data_images"] = len(items)
        if skipped:
            job.info["data_skipped"] = [f"{f}: {why}" for f, why in skipped]
    return data
