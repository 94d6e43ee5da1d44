"""Records written while the disk fills up: the old file stays whole, no temp file is left.

Two real write failures, no patched functions: ENOSPC on a small tmpfs (needs root, as in CI;
skipped otherwise), and EFBIG from a file-size limit (RLIMIT_FSIZE) in a child process.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys

import pytest

from qexp.record import FINISHED, RUNNING, Record, read_record
from tests.conftest import ROOT


def _record(status: str, payload: int = 0) -> Record:
    return Record(
        record_id="r1",
        status=status,
        experiment="e",
        config_hash="h1",
        metrics={"map50_95": 0.4} if status == FINISHED else {},
        info={"layers": [f"model.{i}.conv" for i in range(payload)]},
    )


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_the_previous_record(tiny_disk):
    job = tiny_disk / "job"
    _record(RUNNING).write(job)
    big = _record(FINISHED, payload=20000)  # ~500 KB of JSON: cannot fit in 64 KiB
    with pytest.raises(OSError) as e:
        big.write(job)
    assert e.value.errno == errno.ENOSPC
    assert read_record(job).status == RUNNING  # whole, parseable, the old one
    assert [p.name for p in job.iterdir()] == ["result.json"], "temp file left behind"
    small = _record(FINISHED)
    small.write(job)  # once it fits, it is written
    assert read_record(job) == small


_LIMITED = """
import json, resource, signal, sys
from pathlib import Path
from qexp.record import Record
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write fails with EFBIG, not a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
rec = Record.from_json(sys.argv[2])
try:
    rec.write(Path(sys.argv[1]))
except OSError as e:
    print(json.dumps({"errno": e.errno}))
"""


def test_file_size_limit_mid_write_keeps_the_previous_record(tmp_path):
    job = tmp_path / "job"
    _record(RUNNING).write(job)
    big = _record(FINISHED, payload=5000)
    p = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(job), big.to_json()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["errno"] == errno.EFBIG
    assert read_record(job).status == RUNNING
    assert [q.name for q in job.iterdir()] == ["result.json"]
