# The two entry points of the README. Each sets up .venv on first use (or when
# pyproject.toml changes) and then runs; later runs skip the install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A second environment with the torch-free install alone: `make test` runs the
# main job in it, so a torch import creeping into the core fails the tests.
CORE_VENV ?= .venv-core
OUT ?= out

.PHONY: run test lint core-smoke bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The main job needs the core and matplotlib for the report: no torch.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[report]'
	touch $@

# Everything: torch, training, the reference implementation, pytest, ruff, mypy.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

$(CORE_VENV)/bin/python:
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip

# The core's dependencies once per pyproject.toml; the package itself is
# reinstalled from a built wheel on every check, so what is tested is what
# `pip install compofa` ships (package data included), not the source tree.
$(CORE_VENV)/.installed: pyproject.toml | $(CORE_VENV)/bin/python
	$(CORE_VENV)/bin/pip install --quiet '.[report]'
	touch $@

# The main job: profile all 243 CompOFA subnets on this CPU with ONNX Runtime
# (rerunning resumes), show the table with latency buckets, then search it for
# the most accurate subnet at a quarter, half and three quarters of the way
# from the fastest subnet's latency to the slowest's (any device's range), and
# write the report: Pareto fronts, design-space views, cross-device and noise.
run: $(VENV)/.installed-run
	mkdir -p $(OUT)
	$(BIN)/compofa profile --space compofa --device onnxruntime --resolution 224 --table $(OUT)/latency.db
	$(BIN)/compofa table show $(OUT)/latency.db --bucket auto
	$(BIN)/compofa search --space compofa --latency table:$(OUT)/latency.db --target 25%,50%,75% -o $(OUT)/search.json
	$(BIN)/compofa report --table $(OUT)/latency.db -o $(OUT)/report

# Two test processes (pytest-xdist), one per core of the 2-core CI machine; a
# module's tests stay in one process, so its shared fixtures are built once.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
	$(MAKE) lint core-smoke

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src
	$(BIN)/mypy

core-smoke: $(CORE_VENV)/.installed
	$(CORE_VENV)/bin/pip install --quiet --no-deps --force-reinstall .
	bash tests/core_smoke.sh $(CORE_VENV)

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/export_speed.py
	$(BIN)/python benchmarks/profile_speed.py
	$(BIN)/python benchmarks/search_speed.py
	$(BIN)/python benchmarks/lut_speed.py
	$(BIN)/python benchmarks/table_safety.py
	$(BIN)/python benchmarks/remote_overhead.py
	$(BIN)/python benchmarks/tflite_speed.py
