"""The one cache-entry protocol: checked (sha256 manifest), locked (flock), atomic (staged).

Every cache kind of qexp goes through it: exported ONNX, calibration statistics, trained
weights (AdaRound, QAT, ModelOpt, MQBench), sensitivity analyses and the TensorRT client's
staged images. A job killed while building, a full disk, or a file damaged later leaves an
entry that *looks* present. An entry counts only when its manifest exists and every file it
lists still has the recorded size and sha256; anything else is reported, cleared and rebuilt.
Building holds an exclusive lock on the entry, so parallel jobs that need the same entry build
it once: the others wait and reuse it. Files are written into a private staging dir and moved
in; the manifest comes last.

Two forms of the same protocol:

- :func:`cached` ``(entry, build)``: reuse the entry, or run ``build(staging_dir)``;
- :func:`claim` / :func:`commit`: for callers that load and save in two calls
  (``qexp.quant.model_cache``). A claim that finds no whole entry holds the entry's lock until
  :func:`commit` or :func:`release`; the runner calls :func:`release_all` when a job ends, so
  a build that raised never blocks the other processes beyond its job.

Entries written by an older qexp (before this protocol) are *adopted* where their kind says
how to recognise a complete one (``adopt``): their files are hashed into a manifest once.
The kinds and their files: docs/architecture.md, "The cache protocol".
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
from typing import IO, Any

log = logging.getLogger("qexp")

MANIFEST = "manifest.json"
_LOCK = ".lock"
_STAGING = ".build-"
# an entry of an older layout -> its manifest meta when it is complete, else None
Adopt = Callable[[Path], "dict[str, Any] | None"]
_claims: dict[str, IO[str]] = {}  # entry -> its lock file, held by this process


class CacheCorrupt(ValueError):
    """A cache entry whose files do not match their manifest (the message says which)."""


def file_hash(path: Path, n: int | None = None) -> str:
    """The sha256 of a file's bytes (hex; the first ``n`` characters when given): qexp's one
    file hasher, for manifests and for cache keys alike."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n] if n else h.hexdigest()


def _acquire(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - the caller holds it open while locked
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
    except BaseException:
        f.close()
        raise
    return f


def _drop(f: IO[str]) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (created), waited for: qexp's one file lock.
    Processes on one machine (or a filesystem with working flock) take turns."""
    f = _acquire(Path(path))
    try:
        yield
    finally:
        _drop(f)


def entry_files(entry: Path) -> list[str]:
    """Every file of ``entry`` as a relative path, but the manifest, lock and staging dirs."""
    entry = Path(entry)
    out = []
    for p in entry.rglob("*"):
        rel = p.relative_to(entry)
        if rel.parts[0].startswith(_STAGING) or (
            len(rel.parts) == 1 and rel.name in (MANIFEST, _LOCK)
        ):
            continue
        if p.is_file():
            out.append(rel.as_posix())
    return sorted(out)


def write_manifest(
    entry: Path, files: Iterable[str] | None = None, meta: dict | None = None
) -> Path:
    """Hash ``files`` (names inside ``entry``; default: all of them) and write the manifest
    atomically, last."""
    from qexp.record import atomic_write_text

    entry = Path(entry)
    listed = {}
    for name in sorted(set(entry_files(entry) if files is None else files)):
        p = entry / name
        if not p.is_file():
            raise FileNotFoundError(f"cache entry {entry}: {name} was not written")
        listed[name] = {"sha256": file_hash(p), "bytes": p.stat().st_size}
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
        return f"unreadable manifest {m}: {type(e).__name__}: {e}"
    if not files:
        return f"empty manifest {m}"
    for name, want in files.items():
        p = entry / name
        if not p.is_file():
            return f"{p} is missing"
        size = p.stat().st_size
        if size != want["bytes"]:
            return f"{p} has {size} bytes, the manifest says {want['bytes']} (truncated?)"
        if file_hash(p) != want["sha256"]:
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


def meta(entry: Path) -> dict[str, Any]:
    """The ``meta`` a whole entry's manifest holds (what its builder said about it)."""
    return dict(json.loads((Path(entry) / MANIFEST).read_text()).get("meta") or {})


def clear(entry: Path) -> None:
    """Remove everything in ``entry`` except its lock file."""
    for p in Path(entry).iterdir():
        if p.name == _LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _key(entry: Path) -> str:
    return str(Path(entry).resolve())


def _hold(entry: Path) -> None:
    """This process holds ``entry``'s lock from now on (waiting for another builder first)."""
    if _key(entry) not in _claims:
        _claims[_key(entry)] = _acquire(Path(entry) / _LOCK)


def claim(entry: Path, adopt: Adopt | None = None) -> bool:
    """True when ``entry`` is whole (reuse it; nothing is held). Otherwise False, with this
    process holding the entry's lock and the entry emptied: build it, then :func:`commit`.

    Waits while another process builds the entry; claiming an entry this process already
    holds does not wait (a failed build's claim is taken over, not deadlocked on)."""
    entry = Path(entry)
    entry.mkdir(parents=True, exist_ok=True)
    _hold(entry)
    why = problem(entry)
    if why is None:
        release(entry)
        return True
    present = [p for p in entry.iterdir() if p.name != _LOCK]
    found = adopt(entry) if present and adopt is not None and _older_layout(entry) else None
    if found is not None:
        write_manifest(entry, None, {**found, "adopted": True})
        log.info("cache entry %s: written by an older qexp, adopted", entry)
        release(entry)
        return True
    if present:
        log.warning("cache entry %s is not usable (%s); rebuilding it", entry, why)
        clear(entry)
    return False


def _older_layout(entry: Path) -> bool:
    """No manifest of this protocol: none at all, or an older kind's own manifest.json."""
    try:
        doc = json.loads((entry / MANIFEST).read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False  # damaged: rebuild, never adopt
    return isinstance(doc, dict) and "files" not in doc


def rebuild(entry: Path, why: str) -> None:
    """Claim ``entry`` for a rebuild although its files are whole (they could not be used:
    ``why``); :func:`commit` the new files."""
    _hold(entry)
    log.warning("cache entry %s is not usable (%s); rebuilding it", entry, why)
    clear(entry)


def staging(entry: Path) -> Path:
    """A fresh private dir inside ``entry`` to build into (moved in by :func:`commit`)."""
    tmp = Path(entry) / f"{_STAGING}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit(
    entry: Path, built: Path, names: Iterable[str] | None = None, meta: dict | None = None
) -> list[str]:
    """Move ``names`` (default: every file) from the staging dir ``built`` into ``entry``,
    write the manifest over all the entry's files, last, and release the claim. Returns the
    files the manifest lists."""
    entry, built = Path(entry), Path(built)
    held = _key(entry) in _claims
    lock = contextlib.nullcontext() if held else file_lock(entry / _LOCK)
    try:
        with lock:
            moved = sorted(set(entry_files(built) if names is None else names))
            for name in moved:
                if not (built / name).is_file():
                    raise FileNotFoundError(f"cache build for {entry} did not write {name}")
                (entry / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(built / name, entry / name)
            write_manifest(entry, None, meta)
            return files(entry)
    finally:
        shutil.rmtree(built, ignore_errors=True)
        release(entry)


def release(entry: Path) -> None:
    """Give up this process's claim on ``entry`` (no-op when it holds none)."""
    f = _claims.pop(_key(entry), None)
    if f is not None:
        _drop(f)


def release_all() -> list[str]:
    """Give up every claim this process holds (a job ended, whatever happened in it); the
    entries whose build never committed, for the log."""
    left = list(_claims)
    for key in left:
        _drop(_claims.pop(key))
    return left


def cached(
    entry: Path,
    build: Callable[[Path], Iterable[str]],
    meta: dict | None = None,
    adopt: Adopt | None = None,
) -> list[str]:
    """The file names of a whole ``entry``; ``build(staging_dir) -> names`` runs when it is not.

    ``build`` writes into a private staging dir; the files it names are moved in and the
    manifest comes last, so a crash at any point leaves an entry that :func:`problem` rejects.
    ``meta`` goes into the manifest; it is read after ``build`` ran, which may fill it in.
    """
    entry = Path(entry)
    if claim(entry, adopt):
        return files(entry)
    try:
        tmp = staging(entry)
        names = sorted(set(build(tmp)))
        return commit(entry, tmp, names, meta)
    finally:
        release(entry)


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
