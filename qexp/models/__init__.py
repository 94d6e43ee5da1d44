"""Detector families; importing this package registers them."""

from qexp.models import ultralytics_family, yolov5_classic  # noqa: F401
from qexp.models.detector import YoloDetector

__all__ = ["YoloDetector"]
