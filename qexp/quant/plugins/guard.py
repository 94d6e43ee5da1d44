"""The one import guard of the optional third-party libraries (ModelOpt, MQBench)."""

from __future__ import annotations

from importlib.util import find_spec


def missing(package: str, what: str, extra: str) -> str | None:
    """The SKIP reason when the optional ``package`` is not installed, else None. The plugin
    modules import their library only inside the functions that run after this said None."""
    if find_spec(package) is None:
        return f"{what}: pip install 'qexp[{extra}]'"
    return None
