"""A damaged exported-ONNX cache entry is detected by its hash and rebuilt by the next job."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qexp import cache
from qexp.record import FINISHED, find_records, read_record
from tests.conftest import ASSETS, CHEAP_JOB, ROOT

pytestmark = pytest.mark.assets
CHEAP = [*CHEAP_JOB, "tracking=none"]


def _qexp(out, cache_dir, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "qexp.cli", *args]
    cmd += [f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}"]
    env = dict(os.environ, QEXP_ASSETS=str(ASSETS))
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p


# flip_byte in the default run: same size, only the manifest's sha256 catches it (truncate too,
# and more checks would; it runs with `make test-all`)
@pytest.mark.parametrize("damage", [pytest.param("truncate", marks=pytest.mark.slow), "flip_byte"])
def test_corrupted_onnx_in_cache_is_rebuilt(tmp_path, damage):
    out, own_cache = tmp_path / "outputs", tmp_path / "cache"  # this test damages its cache
    _qexp(out, own_cache, "seed=0", *CHEAP)
    entries = [d for d in (own_cache / "onnx").iterdir() if d.is_dir()]
    assert len(entries) == 1
    entry = entries[0]
    if not (entry / cache.MANIFEST).exists():
        pytest.skip(
            "the ONNX export cache keeps no sha256 manifest yet: qexp/backends/export_cache.py "
            "must build its entries through qexp.cache.cached()"
        )
    (onnx,) = entry.glob("*.onnx")
    data = onnx.read_bytes()
    if damage == "truncate":  # a job killed mid-copy, a full disk
        onnx.write_bytes(data[: len(data) // 2])
    else:  # bit rot: same size, still parses as protobuf maybe, wrong weights
        mid = len(data) // 2
        onnx.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    assert cache.problem(entry)

    p = _qexp(out, own_cache, "seed=1", *CHEAP)
    assert "rebuilding" in p.stdout + p.stderr
    assert cache.problem(entry) is None
    cache.check_onnx(onnx)  # a whole, loadable model again
    recs = [read_record(r) for r in find_records(out / "runs")]
    assert sorted(r.status for r in recs) == [FINISHED, FINISHED]
