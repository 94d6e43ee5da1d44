"""load_eval_data on the real shared sets: layouts, ground truth, clear errors, skipped images."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from qexp.data import LabelError, load_eval_data
from tests.unit.data.conftest import coco_val_cfg


def test_coco_val_matches_its_annotations(assets):
    data = load_eval_data(coco_val_cfg(assets))
    assert len(data) == 206 and data.num_classes == 80
    gt, cats = data.ground_truth(80)
    assert len(gt["images"]) == 206 and len(gt["annotations"]) == 1786
    from ultralytics.data.converter import coco80_to_coco91_class

    assert cats == coco80_to_coco91_class()  # the standard 80 -> 91 map, read from the json
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 21


def test_max_images_restricts_images_and_ground_truth(assets):
    data = load_eval_data(coco_val_cfg(assets, max_images=5))
    gt, _ = data.ground_truth(80)
    ids = {it.id for it in data.items}
    assert len(data) == 5 and {im["id"] for im in gt["images"]} == ids
    assert all(a["image_id"] in ids for a in gt["annotations"])
    names = [it.path.name for it in data.items]
    assert names == sorted(names)


def test_yolo_labels_become_coco_ground_truth(assets):
    cfg = {
        "name": "coco128",
        "format": "yolo",
        "root": str(assets / "coco128"),
        "images": "images/train2017",
        "labels": "labels/train2017",
    }
    data = load_eval_data(cfg)
    gt, cats = data.ground_truth(80)
    assert len(data) == 128 and cats == list(range(1, 81))
    assert len(gt["annotations"]) == 929  # README: coco128 holds 929 boxes
    a = gt["annotations"][0]
    im = next(i for i in gt["images"] if i["id"] == a["image_id"])
    x, y, w, h = a["bbox"]
    assert x >= 0 and x + w <= im["width"] + 1e-3 and y >= 0 and y + h <= im["height"] + 1e-3


def test_yolo_labels_that_exceed_the_class_count_fail_clearly(assets):
    cfg = {
        "name": "coco128",
        "format": "yolo",
        "root": str(assets / "coco128"),
        "images": "images/train2017",
        "labels": "labels/train2017",
        "max_images": 10,
    }
    data = load_eval_data(cfg)
    with pytest.raises(LabelError, match="class count"):
        data.ground_truth(20)


def test_coco_categories_that_do_not_match_the_model_fail_clearly(assets):
    data = load_eval_data(coco_val_cfg(assets, max_images=2))
    with pytest.raises(LabelError, match="80 categories but the model has 3 classes"):
        data.ground_truth(3)


def test_missing_image_dir_is_named(assets):
    with pytest.raises(FileNotFoundError, match="images/nowhere"):
        load_eval_data(coco_val_cfg(assets, images="images/nowhere"))


def test_missing_annotations_are_named(assets):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_eval_data(coco_val_cfg(assets, annotations="annotations/missing.json"))


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root not found"):
        load_eval_data({"name": "x", "format": "coco", "root": str(tmp_path / "absent")})


def test_unreadable_image_is_skipped_with_a_warning_and_counted(tmp_path, assets, caplog):
    root = tmp_path / "coco"
    img = root / "images" / "val2017"
    img.mkdir(parents=True)
    os.symlink(assets / "coco_val" / "annotations", root / "annotations")
    src = sorted((assets / "coco_val" / "images" / "val2017").glob("*.jpg"))[:3]
    for p in src:
        shutil.copy(p, img / p.name)
    (img / src[1].name).write_bytes(b"not a jpeg at all")  # listed in the json, unreadable
    cfg = coco_val_cfg(assets, root=str(root))
    with caplog.at_level("WARNING", logger="qexp"):
        data = load_eval_data(cfg)
    assert len(data) == 2 and len(data.skipped) == 1
    assert src[1].name in data.skipped[0][0]
    assert any(src[1].name in r.getMessage() for r in caplog.records)
    assert sum(len(b.items) for b in data.batches(320, 2, 32)) == 2


def test_image_that_fails_to_decode_later_is_skipped_and_counted(tmp_path, assets):
    root = tmp_path / "coco"
    img = root / "images" / "val2017"
    img.mkdir(parents=True)
    os.symlink(assets / "coco_val" / "annotations", root / "annotations")
    src = sorted((assets / "coco_val" / "images" / "val2017").glob("*.jpg"))[:2]
    for p in src:
        shutil.copy(p, img / p.name)
    data = load_eval_data(coco_val_cfg(assets, root=str(root)))
    (img / src[0].name).write_bytes(b"")  # broken after listing: decode fails at batch time
    seen = [it.path.name for b in data.batches(320, 1, 32) for it in b.items]
    assert seen == [src[1].name]
    assert [os.path.basename(f) for f, _ in data.skipped] == [src[0].name]


def test_calibration_is_seeded_and_square(assets):
    data = load_eval_data(coco_val_cfg(assets, max_images=1))
    a = data.calibration(320, 4)
    b = data.calibration(320, 4)
    assert len(a) == 4 and all(x.shape == (1, 3, 320, 320) and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert data.calib.files(4) != data.calib.__class__(data.calib.images_dir, seed=1).files(4)
    assert set(data.calib.files(4)) <= set(data.calib.files(None))  # num defaults to calib.num
    for p in data.calib.files(8):
        assert "train2017" in str(p)  # from coco128, disjoint from the eval images


def test_calibration_labels_follow_the_letterbox(assets):
    data = load_eval_data(coco_val_cfg(assets, max_images=1))
    n = 0
    for img, lab in data.calibration_samples(320, 3):
        assert img.shape == (1, 3, 320, 320)
        assert lab.ndim == 2 and lab.shape[1] == 5
        xyxy = np.c_[
            lab[:, 1] - lab[:, 3] / 2,
            lab[:, 2] - lab[:, 4] / 2,
            lab[:, 1] + lab[:, 3] / 2,
            lab[:, 2] + lab[:, 4] / 2,
        ]
        assert (xyxy > -1e-4).all() and (xyxy < 1 + 1e-4).all()
        # boxes stay inside the image content, off the grey (114) padding the letterbox added
        content = np.abs(img[0] - 114 / 255).max(0) > 1e-6
        rows, cols = np.where(content.any(1))[0], np.where(content.any(0))[0]
        s = 320
        assert (xyxy[:, 1] * s >= rows[0] - 1).all() and (xyxy[:, 3] * s <= rows[-1] + 2).all()
        assert (xyxy[:, 0] * s >= cols[0] - 1).all() and (xyxy[:, 2] * s <= cols[-1] + 2).all()
        n += len(lab)
    assert n > 0


def test_ultralytics_data_yaml(tmp_path, assets):
    yaml = tmp_path / "c128.yaml"
    names = "".join(f"  {i}: c{i}\n" for i in range(80))
    yaml.write_text(
        f"path: {assets / 'coco128'}\ntrain: images/train2017\nval: images/train2017\nnames:\n{names}"
    )
    data = load_eval_data({"name": "c128", "format": "yolo", "yaml": str(yaml), "max_images": 6})
    assert len(data) == 6 and data.num_classes == 80
    assert all(it.label_file and it.label_file.parent.name == "train2017" for it in data.items)
    gt, _ = data.ground_truth(80)
    assert len(gt["annotations"]) > 0


def test_ultralytics_dataset_name_offline_says_so(monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.delenv("QEXP_ONLINE", raising=False)
    with pytest.raises(FileNotFoundError, match="(?s)coco8.yaml.*QEXP_ONLINE=1"):
        load_eval_data({"name": "coco8", "format": "yolo", "yaml": "coco8.yaml"})
