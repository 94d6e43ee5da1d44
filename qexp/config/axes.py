"""The sweepable axes, in the order tables and run names use, and the ones only a quantizer
reads: one list for the runner, the tracking sink, the report and the export cache."""

from __future__ import annotations

AXES = ("model", "data", "quantizer", "observer", "calibrator", "ignore", "backend")

# The value an axis takes when the job's quantizer does not read it (its ``consumes``): jobs
# that differ only in an unread axis are the same job.
NEUTRAL = {"observer": "minmax", "calibrator": "none", "ignore": "none"}
QUANT_ONLY_AXES = tuple(NEUTRAL)

# One row of a frontier sweep (conf/recipe/NAME.yaml sets several axes at once). Not one of a
# record's choices, which stay the axes it sets; the report reads it back from the job's
# overrides (``recipe=NAME``) and uses it as a row key where it varies.
RECIPE = "recipe"

# Axes whose dotted overrides change which network or which quantization recipe ran, so the
# choice alone would misname the job (``ignore=none`` with ``ignore.patterns=[...]``). Sizes
# and run knobs (``model.imgsz``, ``data.max_images``, ``backend.threads``) are left out: they
# are in the record's config and params, and the sweeps and paper cells key on the bare name.
DESCRIBED_BY_KEYS: dict[str, frozenset[str] | None] = {
    "model": frozenset({"weights", "family"}),
    "quantizer": None,  # None: every key
    **{axis: None for axis in QUANT_ONLY_AXES},
}
# An overridden value this short is shown in the choice itself (``model=yolov8n+weights=
# yolov10n.yaml``), so rows that differ only in it stay apart in tables; longer ones by key.
_SHOWN_VALUE = 48


def effective_choices(choices: dict[str, str], overrides: tuple[str, ...] | list[str]) -> dict:
    """Each axis's choice with the keys the overrides set inside it appended, so a job run as
    ``ignore=none ignore.patterns=[a]`` is recorded, logged and printed as
    ``ignore=none+patterns=[a]``, not as the ``ignore=none`` it did not run."""
    extra: dict[str, list[str]] = {}
    for o in overrides:
        key, eq, value = o.lstrip("+~").partition("=")
        axis, dot, sub = key.partition(".")
        if axis not in choices or axis not in DESCRIBED_BY_KEYS or not (dot and sub):
            continue
        keys = DESCRIBED_BY_KEYS[axis]
        if keys is None or sub.split(".")[0] in keys:
            shown = f"{sub}={value}" if eq and len(value) <= _SHOWN_VALUE else sub
            extra.setdefault(axis, []).append(shown)
    return {a: "+".join([c, *extra.get(a, ())]) for a, c in choices.items()}
