"""Datasets: evaluation images + COCO ground truth, and the calibration split.

The package's public names, each defined in the module named for its job (``load``: the set a
``data`` config describes; ``dataset``, ``calibration``, ``ground_truth``)."""

from qexp.data.calibration import CalibSet
from qexp.data.dataset import Batch, EvalDataset, Item
from qexp.data.ground_truth import LabelError
from qexp.data.load import load_eval_data

__all__ = ["Batch", "CalibSet", "EvalDataset", "Item", "LabelError", "load_eval_data"]
