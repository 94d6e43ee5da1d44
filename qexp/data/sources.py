"""Where a dataset's images and labels are: a COCO layout, a YOLO layout, or an ultralytics yaml."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("qexp")

IMG_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".mpo", ".dng", ".pfm"}


@dataclass
class Source:
    """Image files (sorted, as ultralytics sorts them) and, for YOLO data, their label files."""

    images: list[Path]
    label_files: list[Path] | None = None  # YOLO txt per image
    annotations: Path | None = None  # COCO instances json
    names: list[str] | None = None  # class names from a data yaml


def under(root: Path, rel: str | None) -> Path | None:
    """``rel`` resolved against ``root`` (an absolute ``rel`` stands alone)."""
    return None if rel in (None, "") else root / str(rel)


def list_images(d: Path, what: str) -> list[Path]:
    if not d.is_dir():
        raise FileNotFoundError(f"{what} image dir not found: {d}")
    files = [p for p in d.rglob("*") if p.suffix.lower() in IMG_SUFFIXES and p.is_file()]
    if not files:
        raise FileNotFoundError(f"{what} image dir holds no images: {d}")
    return sorted(files, key=str)


def label_paths(images: list[Path], labels_dir: Path | None) -> list[Path]:
    """A label dir given: <dir>/<stem>.txt; else ultralytics' rule (last /images/ -> /labels/)."""
    if labels_dir is not None:
        return [labels_dir / f"{p.stem}.txt" for p in images]
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    out = []
    for p in images:
        s = str(p)
        if sa not in s:
            raise FileNotFoundError(
                f"cannot find labels for {p}: no /images/ in its path, no labels dir"
            )
        out.append(Path(sb.join(s.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"))
    return out


def coco_source(root: Path, images: str, annotations: str | None) -> Source:
    ann = under(root, annotations)
    if ann is None:
        raise ValueError(
            f"data.format=coco needs data.annotations (a COCO instances json under {root})"
        )
    if not ann.is_file():
        raise FileNotFoundError(f"COCO annotations not found: {ann}")
    img_dir = under(root, images)
    assert img_dir is not None
    return Source(images=list_images(img_dir, "data"), annotations=ann)


def yolo_source(root: Path, images: str, labels: str | None) -> Source:
    img_dir = under(root, images)
    assert img_dir is not None
    files = list_images(img_dir, "data")
    lab_dir = under(root, labels)
    if lab_dir is not None and not lab_dir.is_dir():
        raise FileNotFoundError(f"YOLO label dir not found: {lab_dir}")
    return Source(images=files, label_files=label_paths(files, lab_dir))


def yaml_source(yaml: str, split: str = "val") -> Source:
    """An ultralytics data yaml (a path, or a name like coco128.yaml that ultralytics resolves)."""
    from qexp import offline

    offline.setup()
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import is_online

    p = Path(yaml)
    if not p.exists() and (p.is_absolute() or len(p.parts) > 1):
        raise FileNotFoundError(f"data yaml not found: {yaml}")
    try:
        data = check_det_dataset(yaml, autodownload=is_online())
    except (FileNotFoundError, OSError, ConnectionError) as err:
        hint = "" if is_online() else " (offline: set QEXP_ONLINE=1 to let ultralytics download it)"
        raise FileNotFoundError(f"data yaml {yaml}: {err}{hint}") from None
    entries = data.get(split)
    if not entries:
        raise ValueError(f"data yaml {yaml} has no {split!r} split")
    files: list[Path] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        src = Path(entry)
        if src.is_dir():
            files += list_images(src, f"{yaml} {split}")
        elif src.suffix == ".txt" and src.is_file():
            base = src.parent
            for line in src.read_text().splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    files.append(q if q.is_absolute() else (base / line).resolve())
        else:
            raise FileNotFoundError(f"data yaml {yaml}: {split} images not found: {src}")
    files = sorted(files, key=str)
    names = data["names"]
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return Source(images=files, label_files=label_paths(files, None), names=names)
