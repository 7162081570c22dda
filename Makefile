# The two entry points of the README. Each sets up .venv on first use (or when
# pyproject.toml changes) and then runs; later runs skip the install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: run test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[report]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train,report]'
	touch $@ $(VENV)/.installed-run

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

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/export_speed.py
	$(BIN)/python benchmarks/profile_speed.py
	$(BIN)/python benchmarks/search_speed.py
	$(BIN)/python benchmarks/lut_speed.py
	$(BIN)/python benchmarks/table_safety.py
