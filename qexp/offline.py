"""Make ultralytics usable without network: offline flag, writable config dirs, a font.

Ultralytics downloads its Arial.ttf and checks for updates at import or plot time; on a machine
without internet those calls hang or fail. ``setup()`` must run before ``import ultralytics``.
Set ``QEXP_ONLINE=1`` to leave ultralytics alone (then names like ``yolov8n.pt`` download).
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def _find_ttf() -> str | None:
    # matplotlib ships DejaVuSans.ttf: always present where ultralytics is.
    try:
        import matplotlib

        cand = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if cand.exists():
            return str(cand)
    except ImportError:
        pass
    found = glob.glob("/usr/share/fonts/**/*.ttf", recursive=True)
    return found[0] if found else None


def setup(home: str | os.PathLike[str] | None = None) -> Path:
    """Idempotent. Returns the ultralytics config dir it configured."""
    online = os.environ.get("QEXP_ONLINE", "") not in ("", "0")
    base = Path(home or os.environ.get("QEXP_HOME") or Path.home() / ".cache" / "qexp")
    cfg_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(base / "yolo")))
    os.environ.setdefault("MPLCONFIGDIR", str(base / "matplotlib"))
    if not online:
        os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # checkpoints load with torch.load(weights_only=True) and ultralytics' class allowlist
    # (ultralytics reads this at import; qexp.models.safe_load, README 'Trusted input')
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")
    # mlflow child processes and git lookups must not wait on a network either
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    font_dir = cfg_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    Path(os.environ["MPLCONFIGDIR"]).mkdir(parents=True, exist_ok=True)
    ttf = None
    for name in _FONT_NAMES:
        if not (font_dir / name).exists():
            ttf = ttf or _find_ttf()
            if ttf:
                shutil.copyfile(ttf, font_dir / name)
    return cfg_dir
