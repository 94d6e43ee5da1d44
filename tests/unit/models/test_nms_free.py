"""NMS-free heads (YOLOv10's v10Detect, YOLO26's end-to-end Detect), end to end on the CPU.

Both architectures are built from ultralytics' yamls with :func:`informative_random` weights
(saved as a .pt, so qexp and ultralytics load the very same model); each is scored by qexp
(one-to-one head, no NMS) and by ``YOLO(pt).val(nms=False)`` on the same coco_val images.
A random model finds no COCO object (mAP 0 = 0 would prove nothing), so the ground truth is
pseudo-labels: ultralytics' own confident detections of that model (score > 0.5) written as
the COCO annotations; a decode that differed from ultralytics' (NMS run, a box format, the
score filter) then moves the mAP away from ~1.
Tolerance: both run the same torch forward on the same letterboxed images and keep the same
rows (score > 0.001, top 300), so the detections are identical and the mAPs equal to float
rounding; ``TOL`` is the bound the NMS models' parity test keeps (0.002), far above that.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from qexp import offline
from tests.conftest import ASSETS

TOL = 0.002
IMAGES, IMGSZ = 8, 320
REAL = ASSETS / "coco_val" / "annotations" / "instances_val2017.json"


def _random_pt(arch: str, tmp: Path) -> Path:
    offline.setup()
    from ultralytics import YOLO

    from qexp.models.random_init import informative_random

    y = YOLO(arch)
    informative_random(y.model)
    path = tmp / f"{Path(arch).stem}-random.pt"
    y.save(str(path))
    return path


def _layout(tmp: Path, annotations: Path) -> Path:
    """coco_val's first images by symlinks, with ``annotations`` as the COCO json and a
    ``val2017.txt`` (what makes ultralytics run its COCO evaluation on that json)."""
    root = tmp / "coco"
    for sub in ("images", "labels", "annotations"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("images/val2017", "labels/val2017"):
        if not (root / sub).exists():
            os.symlink(ASSETS / "coco_val" / sub, root / sub)
    dst = root / "annotations" / "instances_val2017.json"
    dst.unlink(missing_ok=True)
    os.symlink(annotations, dst)
    files = sorted((root / "images" / "val2017").glob("*.jpg"), key=str)[:IMAGES]
    (root / "val2017.txt").write_text("".join(f"{f}\n" for f in files))
    names = "".join(f"  {i}: c{i}\n" for i in range(80))
    yaml = root / "coco_val.yaml"
    yaml.write_text(f"path: {root}\ntrain: val2017.txt\nval: val2017.txt\nnames:\n{names}")
    return root


def _ultralytics_val(pt: Path, root: Path, tmp: Path) -> tuple[dict[str, float], list[dict]]:
    """``YOLO(pt).val(nms=False)``'s COCO metrics and its detections (COCO results)."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionValidator

    stats: dict = {}

    class KeepCocoStats(DetectionValidator):
        def eval_json(self, s):
            stats.update(super().eval_json(s))
            stats["jdict"] = list(self.jdict)
            return stats

    YOLO(str(pt)).val(
        validator=KeepCocoStats,
        data=str(root / "coco_val.yaml"),
        imgsz=IMGSZ,
        batch=2,
        rect=False,
        nms=False,  # ultralytics' switch to the one-to-one head
        device="cpu",
        plots=False,
        save_json=True,
        project=str(tmp / "runs"),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    assert "metrics/mAP50-95(B)" in stats, "ultralytics did not run its COCO evaluation"
    m = {"map50_95": stats["metrics/mAP50-95(B)"], "map50": stats["metrics/mAP50(B)"]}
    return m, stats["jdict"]


def _pseudo_labels(dets: list[dict], tmp: Path) -> Path:
    """COCO annotations made of the confident detections (the real json's images, categories)."""
    real = json.loads(REAL.read_text())
    keep = [d for d in dets if d["score"] > 0.5]
    anns = [
        {
            "id": i + 1,
            "image_id": d["image_id"],
            "category_id": d["category_id"],
            "bbox": d["bbox"],
            "area": abs(d["bbox"][2] * d["bbox"][3]),
            "iscrowd": 0,
        }
        for i, d in enumerate(keep)
    ]
    doc = {"images": real["images"], "categories": real["categories"], "annotations": anns}
    path = tmp / "pseudo.json"
    path.write_text(json.dumps(doc))
    return path


def _qexp_data(root: Path):
    from qexp.data import load_eval_data

    return load_eval_data(
        {
            "name": "pseudo",
            "format": "coco",
            "root": str(root),
            "images": "images/val2017",
            "annotations": "annotations/instances_val2017.json",
            "max_images": IMAGES,
        }
    )


@pytest.mark.parametrize("arch", ["yolo26n.yaml", "yolov10n.yaml"])
def test_nms_free_head_matches_ultralytics_val(tmp_path, arch):
    if not REAL.exists():
        pytest.skip(f"shared assets not found at {ASSETS}")
    from qexp.eval import evaluate
    from qexp.models.ultralytics_family import ultralytics_family

    pt = _random_pt(arch, tmp_path)
    _, found = _ultralytics_val(pt, _layout(tmp_path, REAL), tmp_path)
    root = _layout(tmp_path, _pseudo_labels(found, tmp_path))
    ref, _ = _ultralytics_val(pt, root, tmp_path)
    det = ultralytics_family({"name": arch, "weights": str(pt)})
    assert det.nms_free
    ours = evaluate(det.predict_fn(), det, _qexp_data(root), IMGSZ, 2, False)
    print(f"{arch}: qexp {ours}\nultralytics {ref}")
    assert ref["map50"] > 0.5, "pseudo-labels are the model's own detections: mAP must be high"
    for k in ("map50_95", "map50"):
        assert abs(ours[k] - ref[k]) <= TOL, (k, ours[k], ref[k])


def test_nms_free_onnx_runs_on_onnxruntime_like_torch(tmp_path):
    """The exported one-to-one head (TopK + gathers in the graph) gives torch's detections."""
    import onnxruntime as ort

    from qexp.models.ultralytics_family import ultralytics_family

    pt = _random_pt("yolo26n.yaml", tmp_path)
    det = ultralytics_family({"name": "yolo26n", "weights": str(pt)})
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    path = det.export_onnx(det.module, tmp_path / "e2e.onnx", IMGSZ)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": x})[0]
    ref = det.predict_fn()(x)
    assert out.shape == ref.shape == (1, 300, 6)
    np.testing.assert_allclose(out, ref, atol=1e-3)
    assert [len(d) for d in det.decode(out)] == [len(d) for d in det.decode(ref)] == [300]


@pytest.mark.parametrize("arch", ["yolov10n.yaml", "yolo26n.yaml"])
def test_end2end_false_runs_the_one_to_many_head_with_nms(arch):
    from qexp.models.ultralytics_family import ultralytics_family

    det = ultralytics_family({"name": arch, "weights": arch, "end2end": False})
    x = np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)
    anchors = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    assert not det.nms_free and det.predict_fn()(x).shape == (1, 4 + 80, anchors)


def test_end2end_true_on_a_head_without_one_to_one_names_the_model():
    from qexp.models.ultralytics_family import ultralytics_family

    with pytest.raises(ValueError, match="yolov8n.yaml has no one-to-one"):
        ultralytics_family({"name": "yolov8n", "weights": "yolov8n.yaml", "end2end": True})
