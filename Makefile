# scalekit: `make test` and `make demo` do all the set-up on a fresh machine.
#
#   make test    create .venv, install everything, build the ops, run the test suite
#   make demo    same set-up, then run the library's main job on a built-in default
#   make bench   benchmarks: ours vs peers, one table per op family
#   make docs    Sphinx docs in docs/_build/html (warnings are errors)
#
# Environment: PYTHON (interpreter that creates .venv), FORCE_CUDA=1 (build the
# CUDA kernels without a visible GPU), CUDA_HOME (CUDA toolkit).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_DEPS := $(VENV)/.deps-installed
# Everything the project needs to build, test, benchmark and document itself.
# torch/torchvision: the registry's default (CUDA) builds, which run on the CPU too.
DEPS := torch torchvision numpy pycocotools hypothesis pytest ninja setuptools sphinx furo
SOURCES := setup.py $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h' 2>/dev/null)
BUILT := $(VENV)/.ops-built

.PHONY: test test-fast demo bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_DEPS): Makefile | $(PY)
	$(PY) -m pip install --quiet $(DEPS)
	touch $@

# Built once per run; rebuilt only when csrc/ or setup.py change.
$(BUILT): $(STAMP_DEPS) $(SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

test: $(BUILT)
	$(PY) -m pytest

test-fast: $(BUILT)
	$(PY) -m pytest -m "not slow" -x -q

# SNIPER's chip pipeline on a seeded synthetic dataset (generated on first run).
demo: $(BUILT)
	$(PY) examples/sniper/chips_demo.py

bench: $(BUILT)
	$(PY) -m benchmarks

docs: $(BUILT)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf build docs/_build scalekit/*.so $(BUILT)
