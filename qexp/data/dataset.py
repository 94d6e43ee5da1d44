"""The evaluation set: images in ultralytics' order, letterboxed batches, COCO ground truth."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qexp.data import ground_truth as gt_mod
from qexp.data.calibration import CalibSet
from qexp.data.preprocess import RatioPad, image_hw, imread, preprocess, rect_batches, to_float

log = logging.getLogger("qexp")


@dataclass(frozen=True)
class Item:
    id: int  # COCO image id
    path: Path
    hw: tuple[int, int]  # original (height, width)
    label_file: Path | None = None


@dataclass
class Batch:
    """One letterboxed batch: float32 NCHW RGB 0..1, and what is needed to map boxes back."""

    images: np.ndarray
    items: list[Item]
    ratio_pad: list[RatioPad]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


@dataclass
class EvalDataset:
    """Implements :class:`qexp.interfaces.EvalData`."""

    name: str
    items: list[Item]
    calib: CalibSet
    coco: dict | None = None  # COCO instances json (format=coco)
    names: list[str] | None = None  # class names (from a data yaml)
    rect: bool = False
    batch: int = 1
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) never evaluated

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int | None:
        """Classes the ground truth speaks of (None: YOLO labels without names; the model's)."""
        if self.coco is not None:
            return len(self.coco["categories"])
        return len(self.names) if self.names else None

    def skip(self, path: Path | str, why: str) -> None:
        log.warning("skipping image %s: %s", path, why)
        self.skipped.append((str(path), why))

    def batches(
        self, imgsz: int, batch: int | None = None, stride: int = 32, rect: bool | None = None
    ) -> Iterator[Batch]:
        """Letterboxed batches in ultralytics' order; an undecodable image is skipped and counted."""
        batch = int(batch or self.batch)
        rect = self.rect if rect is None else rect
        if rect:
            hw = np.array([it.hw for it in self.items], dtype=np.float64).reshape(-1, 2)
            order, shapes = rect_batches(hw, batch, imgsz, stride)
            items = [self.items[i] for i in order]
        else:
            items, shapes = self.items, [(imgsz, imgsz)] * ((len(self.items) + batch - 1) // batch)
        for bi, shape in enumerate(shapes):
            chunk, ims, rps = [], [], []
            for it in items[bi * batch : (bi + 1) * batch]:
                im = imread(it.path)
                if im is None:
                    self.skip(it.path, "cannot be decoded")
                    continue
                chw, rp = preprocess(im, imgsz, shape)
                chunk.append(it)
                ims.append(chw)
                rps.append(rp)
            if chunk:
                yield Batch(to_float(ims), chunk, rps)

    def ground_truth(self, num_classes: int) -> tuple[dict, list[int]]:
        """COCO ground truth of these images, and the model class index -> category id map."""
        if self.coco is not None:
            cats = gt_mod.category_map(self.coco)
            if len(cats) != num_classes:
                raise gt_mod.LabelError(
                    f"{self.name}: the annotations have {len(cats)} categories but the model has "
                    f"{num_classes} classes (labels do not match the class count)"
                )
            return gt_mod.subset(self.coco, {it.id for it in self.items}), cats
        if self.names is not None and len(self.names) != num_classes:
            raise gt_mod.LabelError(
                f"{self.name}: the data yaml names {len(self.names)} classes but the model has "
                f"{num_classes} (labels do not match the class count)"
            )
        images = [(it.id, it.path.name, it.hw) for it in self.items]
        label_files = [it.label_file for it in self.items]
        labels = [
            gt_mod.read_yolo_labels(p) if p else np.zeros((0, 5), np.float32) for p in label_files
        ]
        labels = [
            np.unique(lb, axis=0) if len(lb) else lb for lb in labels
        ]  # as ultralytics: no dups
        files = [p or Path("?") for p in label_files]
        return gt_mod.yolo_to_coco(images, labels, num_classes, files), list(
            range(1, num_classes + 1)
        )

    def calibration(self, imgsz: int, num: int | None = None) -> list[np.ndarray]:
        """Calibration images, each (1, 3, imgsz, imgsz) float32, letterboxed like eval."""
        return [img for img, _ in self.calib.samples(imgsz, num, labels=False)]

    def calibration_samples(
        self, imgsz: int, num: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(image (1,3,S,S), labels (n,5) [cls, cx, cy, w, h] normalised to the letterboxed S x S)."""
        return self.calib.samples(imgsz, num, labels=True)


def make_items(
    images: list[Path], label_files: list[Path] | None, ids: list[int], skip
) -> list[Item]:
    """Items for readable images; unreadable ones are reported through ``skip``."""
    out = []
    for i, p in enumerate(images):
        try:
            hw = image_hw(p)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a broken file
            skip(p, f"unreadable image ({type(e).__name__}: {e})")
            continue
        out.append(Item(ids[i], p, hw, label_files[i] if label_files else None))
    return out
