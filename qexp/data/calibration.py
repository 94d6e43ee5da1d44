"""The calibration / fine-tuning split: N seeded images (with their YOLO labels for QAT)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qexp.data.ground_truth import read_yolo_labels
from qexp.data.preprocess import imread, preprocess, to_float
from qexp.data.sources import label_paths, list_images

log = logging.getLogger("qexp")


@dataclass
class CalibSet:
    """Images under ``images_dir`` (labels under ``labels_dir``), sampled with ``seed``."""

    images_dir: Path
    labels_dir: Path | None = None
    num: int = 128
    seed: int = 0

    def files(self, num: int | None = None) -> list[Path]:
        """``num`` images chosen by a seeded permutation of the sorted file list."""
        files = list_images(self.images_dir, "calibration")
        num = int(self.num if num is None else num)
        if num > len(files):
            log.warning(
                "calibration wants %d images; %s has %d: using all",
                num,
                self.images_dir,
                len(files),
            )
        idx = np.random.default_rng(self.seed).permutation(len(files))[:num]
        return [files[i] for i in idx]

    def samples(
        self, imgsz: int, num: int | None = None, labels: bool = True
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(image (1,3,S,S) float32, labels (n,5) normalised to the letterboxed image)."""
        files = self.files(num)
        lfiles = label_paths(files, self.labels_dir) if labels and self.labels_dir else None
        if labels and lfiles is None:
            raise FileNotFoundError(
                f"calibration labels wanted but data.calib.labels is not set ({self.images_dir})"
            )
        for i, p in enumerate(files):
            im = imread(p)
            if im is None:
                log.warning("skipping calibration image %s: cannot be decoded", p)
                continue
            h0, w0 = im.shape[:2]
            chw, ((gh, gw), (pw, ph)) = preprocess(im, imgsz, (imgsz, imgsz))
            lab = np.zeros((0, 5), np.float32)
            if lfiles is not None:
                lab = read_yolo_labels(lfiles[i]).copy()
                lab[:, 1] = (lab[:, 1] * w0 * gw + pw) / imgsz
                lab[:, 2] = (lab[:, 2] * h0 * gh + ph) / imgsz
                lab[:, 3] = lab[:, 3] * w0 * gw / imgsz
                lab[:, 4] = lab[:, 4] * h0 * gh / imgsz
            yield to_float([chw]), lab
