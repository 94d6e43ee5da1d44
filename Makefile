# qexp — common tasks. `make install demo` is the quickstart; `make test` is what CI runs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export QEXP_HOME ?= $(CURDIR)/.qexp-home
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false

.PHONY: install demo test test-all lint ui server server-stop clean

install:  ## venv + torch pinned by constraints.txt + qexp (editable) with dev tools
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,launchers,search]'
	$(BIN)/pip install -q --no-deps 'hydra-optuna-sweeper>=1.3'  # see pyproject.toml, search

demo:  ## the default job: yolov8n fp32 on the shared coco_val subset, ONNX Runtime CPU, MLflow sqlite
	$(BIN)/qexp
	$(BIN)/qexp report --experiment default

test:  ## fast + e2e tests (CPU); slow and GPU tests deselected; -rs: which skipped, and why
	$(BIN)/python -m pytest -q -rs --durations=20

test-all:  ## everything, slow tests included (GPU tests skip themselves without a GPU)
	$(BIN)/python -m pytest -q -rs -m "slow or not slow"

lint:
	$(BIN)/ruff check qexp tests scripts
	$(BIN)/ruff format --check qexp tests scripts
	$(BIN)/mypy qexp

ui:  ## MLflow UI on 127.0.0.1:5000 over the repository's outputs/ (elsewhere: `qexp ui` there)
	$(BIN)/qexp ui --port $${PORT:-5000} --output-dir $${QEXP_OUTPUT_DIR:-outputs}

server:  ## mlflow server on 127.0.0.1 (sqlite) for parallel sweeps: tracking=mlflow_server
	$(BIN)/qexp server start

server-stop:
	$(BIN)/qexp server stop

clean:
	rm -rf outputs/runs outputs/sweeps outputs/index outputs/cache
