"""The exported-ONNX cache: one export per key, reuse, rebuild of a damaged entry."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from qexp.backends.export_cache import cached_export
from qexp.interfaces import Deployable
from qexp.job import Job
from qexp.models.export import export_onnx


def _setup(compose, tmp_path: Path, weights_bytes: bytes = b"w1"):
    weights = tmp_path / "w.pt"
    weights.write_bytes(weights_bytes)
    cfg = compose([f"model.weights={weights}", "model.imgsz=32", "quantizer=none"])
    job = Job(cfg=cfg, dir=tmp_path / "job", cache_dir=tmp_path / "cache")
    module = torch.nn.Conv2d(3, 4, 3).eval()
    exports: list[Path] = []

    def export(out_dir: Path, batch: int = 1) -> Path:
        exports.append(out_dir)
        return export_onnx(module, Path(out_dir) / f"m_b{batch}.onnx", 32, batch, simplify=False)

    deploy = Deployable(
        detector=None, module=module, precision="fp32", route="float", export=export
    )  # type: ignore[arg-type]
    return job, deploy, exports


def test_export_once_then_reuse(compose, tmp_path):
    job, deploy, exports = _setup(compose, tmp_path)
    a = cached_export(job, deploy, 1)
    b = cached_export(job, deploy, 1)
    assert a == b and a.is_file() and len(exports) == 1
    c = cached_export(job, deploy, 2)  # another batch is another graph
    assert c != a and c.name == "m_b2.onnx" and len(exports) == 2


def test_other_weights_are_another_entry(compose, tmp_path):
    job, deploy, _ = _setup(compose, tmp_path)
    a = cached_export(job, deploy, 1)
    (tmp_path / "w.pt").write_bytes(b"w2")  # same path, new content
    assert cached_export(job, deploy, 1).parent != a.parent


def test_model_options_added_since_key_the_export_away_from_their_default(compose, tmp_path):
    """model.split_c2f / model.end2end change the graph: a split job must not reuse the
    unsplit ONNX (it did, before they were keyed); at their defaults the key is as before."""
    from qexp.backends.export_cache import export_key
    from qexp.config.settings import settings_of

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"w")
    _, deploy, _ = _setup(compose, tmp_path)

    def key(*over: str) -> dict:
        cfg = compose([f"model.weights={weights}", "model.imgsz=32", "quantizer=none", *over])
        return export_key(settings_of(cfg), deploy, 1)

    base = key()
    assert not any(k.startswith("model.") for k in base)
    assert key("model.split_c2f=true") != base and key("model.end2end=false") != base
    assert key("model.split_c2f=false") == base


def test_truncated_entry_is_rebuilt(compose, tmp_path, caplog):
    job, deploy, exports = _setup(compose, tmp_path)
    a = cached_export(job, deploy, 1)
    a.write_bytes(a.read_bytes()[:20])
    with caplog.at_level("WARNING", logger="qexp"):
        b = cached_export(job, deploy, 1)
    assert b == a and len(exports) == 2
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    onnx.checker.check_model(onnx.load(str(b)))
