"""The result record: the source of truth for one job (MLflow is only a sink).

Reports read its fields, never its prose (docs/architecture.md, "Records are the source of
truth"): a SKIPPED repeat names the job it repeats in ``equivalent_to``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_FILE = "result.json"
RECORD_VERSION = 1

FINISHED, FAILED, SKIPPED, RUNNING = "FINISHED", "FAILED", "SKIPPED", "RUNNING"
STATUSES = (FINISHED, FAILED, SKIPPED, RUNNING)


@dataclass(frozen=True)
class Equivalent:
    """The job a SKIPPED job repeats (same config hash): ``job_dir`` had measured it
    (``status`` FINISHED) or was measuring it (RUNNING) when this one was decided."""

    job_dir: str
    status: str
    unread: tuple[str, ...] = ()  # axes this job's quantizer does not read, where the two differ


# The runner's SKIPPED reasons before records carried ``equivalent_to`` (read back once, here).
_EQUIVALENT_REASONS = (
    (FINISHED, re.compile(r"equivalent to the FINISHED job in (.+?): \S+ does not use (.+)$")),
    (RUNNING, re.compile(r"equivalent to the job running now in (.+?) \(same config hash\)")),
)


def equivalent_from_reason(reason: str | None) -> Equivalent | None:
    """The :class:`Equivalent` an older record's SKIPPED reason names, else None."""
    first = first_line(reason)
    for status, pattern in _EQUIVALENT_REASONS:
        m = pattern.match(first)
        if m:
            unread = tuple(a.strip() for a in m.group(2).split(",")) if m.lastindex == 2 else ()
            return Equivalent(m.group(1), status, unread)
    return None


@dataclass(frozen=True)
class Record:
    record_id: str
    status: str
    experiment: str
    config_hash: str
    choices: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path relative to job_dir
    info: dict[str, Any] = field(default_factory=dict)  # quantized/ignored layers, alignment...
    reason: str | None = None  # why SKIPPED
    equivalent_to: Equivalent | None = None  # SKIPPED as a repeat of that job
    error: str | None = None  # why FAILED (exception + traceback tail)
    sweep_id: str | None = None
    job_name: str = ""
    job_dir: str = ""
    git_sha: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    resumed_from: str | None = None
    version: int = RECORD_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"record status must be one of {STATUSES}, got {self.status!r}")

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        d = dict(d)
        eq = d.get("equivalent_to")
        if isinstance(eq, dict):
            d["equivalent_to"] = Equivalent(**{**eq, "unread": tuple(eq.get("unread") or ())})
        elif eq is None and d.get("status") == SKIPPED:  # written before the field existed
            d["equivalent_to"] = equivalent_from_reason(d.get("reason"))
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> Record:
        return cls.from_dict(json.loads(s))

    def write(self, job_dir: Path) -> Path:
        return atomic_write_text(Path(job_dir) / RECORD_FILE, self.to_json())


def first_line(text: str | None) -> str:
    """The first line of a reason or error (what a table cell or a run tag shows)."""
    return (text or "").strip().split("\n")[0]


def read_record(path: Path) -> Record:
    """Read ``result.json`` (or the record inside a job dir), naming the file on error."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    try:
        return Record.from_json(path.read_text())
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"cannot read result record {path}: {e}") from e


def find_records(root: Path) -> list[Path]:
    """Every result.json under ``root`` (sorted, so ingest order is stable)."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(root.rglob(RECORD_FILE))


def atomic_write_text(path: Path, text: str) -> Path:
    """Write via a temp file + fsync + rename: a crash or full disk never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
