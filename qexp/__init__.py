"""qexp: config-driven quantization experiments for YOLO detectors."""

from qexp.threads import passive_openmp

passive_openmp()  # before anything imports torch: see qexp/threads.py
