"""Find a weights file, or say clearly why it cannot be had (offline, missing)."""

from __future__ import annotations

from pathlib import Path

from qexp import offline


def ultralytics_online() -> bool:
    """Whether ultralytics may download (QEXP_ONLINE=1 and a network)."""
    offline.setup()
    from ultralytics.utils import is_online

    return bool(is_online())


def resolve_weights(weights: str, downloadable: bool = True) -> str:
    """A local path, an architecture yaml, or (online) an ultralytics name such as yolov8n.pt."""
    p = Path(str(weights))
    if p.is_file():
        return str(p)
    if p.exists():
        raise FileNotFoundError(f"weights path is not a file: {weights}")
    bare = len(p.parts) == 1
    if bare and p.suffix in (".yaml", ".yml"):
        return str(weights)  # an ultralytics architecture (random init), built offline
    if downloadable and bare and p.suffix == ".pt":
        if ultralytics_online():
            return str(weights)  # ultralytics downloads official names, as users expect
        raise FileNotFoundError(
            f"weights file not found: {weights} (offline, so ultralytics cannot download it; "
            "set QEXP_ONLINE=1 on a machine with network, or give a path)"
        )
    raise FileNotFoundError(f"weights file not found: {weights}")
