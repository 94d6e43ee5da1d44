"""Cache entries that prove they are whole: a sha256 manifest written last, checked on reuse.

A job killed while exporting, a full disk, or a file damaged later leaves a cache entry that
*looks* present. An entry counts only when its manifest exists and every file in it still has
the recorded size and sha256; anything else is reported, cleared and rebuilt. Building holds an
exclusive lock on the entry, so parallel jobs that need the same entry build it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

log = logging.getLogger("qexp")

MANIFEST = "manifest.json"
_LOCK = ".lock"


class CacheCorrupt(ValueError):
    """A cache entry whose files do not match their manifest (the message says which)."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(entry: Path, files: Iterable[str], meta: dict | None = None) -> Path:
    """Hash ``files`` (names inside ``entry``) and write the manifest atomically, last."""
    from qexp.record import atomic_write_text

    entry = Path(entry)
    listed = {}
    for name in sorted(set(files)):
        p = entry / name
        if not p.is_file():
            raise FileNotFoundError(f"cache entry {entry}: {name} was not written")
        listed[name] = {"sha256": sha256(p), "bytes": p.stat().st_size}
    doc = {"files": listed, "meta": meta or {}}
    return atomic_write_text(entry / MANIFEST, json.dumps(doc, indent=2, sort_keys=True))


def problem(entry: Path) -> str | None:
    """Why ``entry`` cannot be reused (missing/partial/corrupt), or None when it is whole."""
    entry = Path(entry)
    m = entry / MANIFEST
    if not m.is_file():
        return "no manifest (never completed, or written by an older qexp)"
    try:
        files = json.loads(m.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest {m}: {e}"
    if not files:
        return f"empty manifest {m}"
    for name, want in files.items():
        p = entry / name
        if not p.is_file():
            return f"{p} is missing"
        size = p.stat().st_size
        if size != want["bytes"]:
            return f"{p} has {size} bytes, the manifest says {want['bytes']} (truncated?)"
        if sha256(p) != want["sha256"]:
            return f"{p} does not match its sha256 (corrupted)"
    return None


def verify(entry: Path) -> None:
    """Raise :class:`CacheCorrupt` naming the bad file when ``entry`` is not whole."""
    why = problem(entry)
    if why:
        raise CacheCorrupt(f"cache entry {entry}: {why}")


def files(entry: Path) -> list[str]:
    """The file names a whole entry's manifest lists."""
    return sorted(json.loads((Path(entry) / MANIFEST).read_text())["files"])


@contextlib.contextmanager
def locked(entry: Path) -> Iterator[None]:
    """An exclusive lock on ``entry`` (parallel jobs on one filesystem wait for the builder)."""
    entry = Path(entry)
    entry.mkdir(parents=True, exist_ok=True)
    with open(entry / _LOCK, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clear(entry: Path) -> None:
    """Remove everything in ``entry`` except its lock file."""
    for p in Path(entry).iterdir():
        if p.name == _LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def cached(
    entry: Path, build: Callable[[Path], Iterable[str]], meta: dict | None = None
) -> list[str]:
    """The file names of a whole ``entry``; ``build(tmp_dir) -> names`` runs when it is not.

    ``build`` writes into a private temp dir; its files are moved in and the manifest comes
    last, so a crash at any point leaves an entry that :func:`problem` rejects.
    """
    entry = Path(entry)
    with locked(entry):
        why = problem(entry)
        if why is None:
            return files(entry)
        if any(p.name != _LOCK for p in entry.iterdir()):
            log.warning("cache entry %s is not usable (%s); rebuilding it", entry, why)
            clear(entry)
        tmp = entry / f".build-{os.getpid()}"
        tmp.mkdir()
        try:
            names = sorted(set(build(tmp)))
            for name in names:
                if not (tmp / name).is_file():
                    raise FileNotFoundError(f"cache build for {entry} did not write {name}")
                os.replace(tmp / name, entry / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        write_manifest(entry, names, meta)
        return names


def check_onnx(path: Path) -> None:
    """Raise ValueError naming ``path`` unless it is a loadable, well-formed ONNX model."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - protobuf raises many types; all mean "malformed"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"malformed ONNX file {path}: {msg}") from e
