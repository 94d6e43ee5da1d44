"""Small real datasets for data tests: the first images of coco_val, in qexp's and ultralytics' form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

N_SMALL = 12


def coco_val_cfg(assets: Path, **kw) -> dict:
    cfg = {
        "name": "coco_val",
        "format": "coco",
        "root": str(assets / "coco_val"),
        "images": "images/val2017",
        "annotations": "annotations/instances_val2017.json",
        "calib": {
            "root": str(assets / "coco128"),
            "images": "images/train2017",
            "labels": "labels/train2017",
            "num": 8,
            "seed": 0,
        },
    }
    cfg.update(kw)
    return cfg


def ultralytics_layout(tmp_path: Path, assets: Path, n: int | None) -> Path:
    """coco_val as ultralytics wants it, by symlinks (its label cache lands in tmp, not in assets).

    Returns the image list file: ``.../coco/val2017.txt`` (the path ultralytics recognises as COCO).
    """
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    src = assets / "coco_val"
    for sub in ("images/val2017", "labels/val2017", "annotations"):
        if not (root / sub).exists():
            os.symlink(src / sub, root / sub)
    files = sorted((root / "images" / "val2017").glob("*.jpg"), key=str)[:n]
    txt = root / "val2017.txt"
    txt.write_text("".join(f"{f}\n" for f in files))
    return txt


@pytest.fixture
def small_data(assets):
    from qexp.data import load_eval_data

    return load_eval_data(coco_val_cfg(assets, max_images=N_SMALL))
