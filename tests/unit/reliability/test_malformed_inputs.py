"""A malformed weights file or data yaml fails its job with an error that names the file.

Real files, damaged the way they are in practice (a truncated download, a file that is not a
checkpoint at all, a yaml with a syntax error or without a val split), run through the real
runner; the job must end FAILED with the path in its error, and the record must say so.
"""

from __future__ import annotations

import pytest

from qexp.record import FAILED, read_record
from qexp.runner import JobSpec, run_job

pytestmark = pytest.mark.assets
FAST = ["tracking=none", "data=tiny", "data.max_images=1", "model.imgsz=320", "backend.iters=1"]


def _run(compose, tmp_path, *overrides):
    cfg = compose([*FAST, *overrides])
    rec = run_job(cfg, JobSpec(job_dir=tmp_path / "job", choices={}))
    assert read_record(tmp_path / "job") == rec
    return rec


@pytest.mark.parametrize("damage", ["truncated", "not_a_checkpoint", "empty"])
def test_malformed_weights_name_the_file(compose, tmp_path, assets, damage):
    real = (assets / "weights" / "yolov8n-coco-from-ovint8.pt").read_bytes()
    bad = tmp_path / f"{damage}.pt"
    bad.write_bytes(
        {
            "truncated": real[: len(real) // 3],
            "not_a_checkpoint": b"<html>404</html>" * 64,
            "empty": b"",
        }[damage]
    )
    rec = _run(compose, tmp_path, f"model.weights={bad}")
    assert rec.status == FAILED
    assert str(bad) in rec.error.splitlines()[0], rec.error[:500]


@pytest.mark.parametrize(
    "text",
    [
        "path: [unclosed\nval: images\n",  # yaml syntax error
        "names: {0: person}\ntrain: images\n",  # no val split
        "path: /nonexistent/qexp\nval: images/val\nnames: {0: person}\n",  # images missing
    ],
    ids=["syntax_error", "no_val_split", "missing_images"],
)
def test_malformed_data_yaml_names_the_file(compose, tmp_path, text):
    bad = tmp_path / "data.yaml"
    bad.write_text(text)
    rec = _run(compose, tmp_path, "data.format=yolo", f"data.yaml={bad}", f"data.root={tmp_path}")
    assert rec.status == FAILED
    assert str(bad) in rec.error.splitlines()[0], rec.error[:500]
