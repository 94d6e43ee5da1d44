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
