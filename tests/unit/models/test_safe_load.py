"""Loading a checkpoint never runs code from it; a damaged checkpoint is named."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from qexp.models.safe_load import UnsafeCheckpointError, classic_global
from qexp.plugins import load_plugins
from qexp.registry import MODEL_FAMILIES
from tests.conftest import ASSETS

load_plugins()  # the families register when their modules load
V5 = ASSETS / "weights" / "yolov5n-v6.1-coco.pt"
V8 = ASSETS / "weights" / "yolov8n-coco-from-ovint8.pt"


class _Touch:
    """Pickles as a call of ``fn(*args)``: what a crafted checkpoint uses to run a command."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.fixture(params=["os.system", "subprocess.call"])
def crafted(request, tmp_path):
    """(a .pt whose unpickling would create ``marker``, marker) in the layout of a checkpoint."""
    marker = tmp_path / "PWNED"
    call = (
        _Touch(os.system, f"touch {marker}")
        if request.param == "os.system"
        else _Touch(subprocess.call, ["touch", str(marker)])
    )
    path = tmp_path / "evil.pt"
    torch.save({"model": call, "epoch": 1, "date": "2026-11-26"}, path)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("family", ["yolov5", "ultralytics"])
def test_crafted_checkpoint_is_refused_and_runs_nothing(crafted, family):
    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load .*evil\.pt") as e:
        MODEL_FAMILIES.get(family)({"name": "x", "weights": str(path)}, None)
    assert "system" in str(e.value) or ".call" in str(e.value)  # the refused global is named
    assert "trust" in str(e.value)
    assert not marker.exists(), "the checkpoint's command ran"


def test_refusal_holds_in_a_fresh_process(crafted):
    """The CLI's path: offline.setup() before ultralytics is imported, then the family."""
    path, marker = crafted
    code = (
        "import sys; from qexp import offline; offline.setup(); "
        "from qexp.plugins import load_plugins; load_plugins(); "
        "from qexp.registry import MODEL_FAMILIES as M; "
        "M.get('ultralytics')({'name': 'x', 'weights': sys.argv[1]}, None)"
    )
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert p.returncode != 0 and "UnsafeCheckpointError" in p.stderr, p.stderr[-2000:]
    assert not marker.exists()


def test_classic_allowlist():
    assert classic_global("collections", "OrderedDict") is __import__("collections").OrderedDict
    assert classic_global("torch.nn.modules.conv", "Conv2d") is torch.nn.Conv2d
    assert classic_global("torch", "float16") is torch.float16
    for module, name in (
        ("posix", "system"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("torch", "load"),  # a torch function, not a dtype: could load another file
        ("torch.nn.modules.module", "register_module_forward_hook"),
    ):
        with pytest.raises(UnsafeCheckpointError, match=f"{module}.{name}"):
            classic_global(module, name)


@pytest.mark.skipif(not V5.exists(), reason="shared assets not found")
def test_truncated_classic_checkpoint_names_the_path(tmp_path):
    cut = tmp_path / "cut.pt"
    data = V5.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match=rf"{cut}.*truncated or damaged"):
        MODEL_FAMILIES.get("yolov5")({"name": "x", "weights": str(cut)}, None)


@pytest.mark.skipif(not V8.exists(), reason="shared assets not found")
def test_real_checkpoints_still_load_restricted():
    from ultralytics.nn import tasks

    assert tasks.SAFE_LOAD, "tests/conftest.py runs offline.setup() before ultralytics"
    det = MODEL_FAMILIES.get("ultralytics")({"name": "v8", "weights": str(V8)}, None)
    assert det.num_classes == 80
