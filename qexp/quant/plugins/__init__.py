"""Quantizers built on optional third-party libraries: ModelOpt (``ptq_modelopt``) and MQBench
(``ptq_mqbench``). Each module imports without its library and SKIPS its jobs with the install
hint when it is missing (guard.py)."""
