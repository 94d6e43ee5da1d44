"""Post-processing, COCO metrics and alignment, shared by every backend."""

from qexp.eval.coco_metrics import coco_map, to_coco_json
from qexp.eval.evaluator import Predict, evaluate
from qexp.eval.nms import VAL, NMSConfig, nms_free, non_max_suppression

__all__ = [
    "VAL",
    "NMSConfig",
    "Predict",
    "coco_map",
    "evaluate",
    "nms_free",
    "non_max_suppression",
    "to_coco_json",
]
