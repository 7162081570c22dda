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
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train]'
	touch $@ $(VENV)/.installed-run

# The main job, as far as compofa goes today: list the design spaces, show the
# CompOFA space and export its largest subnet to ONNX.
run: $(VENV)/.installed-run
	$(BIN)/compofa spaces
	$(BIN)/compofa space show compofa
	mkdir -p $(OUT)
	$(BIN)/compofa export compofa-r224-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666 -o $(OUT)/compofa-largest-r224.onnx

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/export_speed.py
