"""The sweepable axes, in the order tables and run names use, and the ones only a quantizer
reads: one list for the runner, the tracking sink, the report and the export cache."""

from __future__ import annotations

AXES = ("model", "data", "quantizer", "observer", "calibrator", "ignore", "backend")

# The value an axis takes when the job's quantizer does not read it (its ``consumes``): jobs
# that differ only in an unread axis are the same job.
NEUTRAL = {"observer": "minmax", "calibrator": "none", "ignore": "none"}
QUANT_ONLY_AXES = tuple(NEUTRAL)
