"""The TensorRT worker: runs in its own process under any Python that has ``tensorrt``.

Everything in this package imports only the standard library, numpy and tensorrt (CUDA through
ctypes on libcudart), because on the GPU machine the only TensorRT builder we can get is 8.6 for
Python 3.10 while the rest of qexp runs under Python 3.12. The client is
:mod:`qexp.backends.tensorrt`; the two talk through :mod:`qexp.trt.protocol` (JSON files).
"""
