"""`python -m qexp.ui --port N`, the same as `qexp ui`: the MLflow UI over ./outputs/mlflow.db;
the entry point kept at this short path for scripts. The code is :mod:`qexp.tracking.ui`."""

from __future__ import annotations

import sys

from qexp.tracking.ui import main

if __name__ == "__main__":
    sys.exit(main())
