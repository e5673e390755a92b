# The README's two commands. Each creates the environment when it is missing, then runs.
#   make sweep   the default fcn sweep (data: see DLB_TUNE_DATA below)
#   make test    the tests (real data from ../shared/data or $DLB_TUNE_DATA)
#   make test-cluster  only the autoscaling-cluster tests (make test's second stage)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# As if activated: tests and sweeps that start `dlb-tune` or `python` find the environment's.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
# Data, for `make sweep` as for `make test`: $DLB_TUNE_DATA, else ../shared/data beside the
# checkout, else (left unset) dlb-tune's per-user folder, where it downloads what is missing.
ifeq ($(DLB_TUNE_DATA),)
ifneq ($(wildcard ../shared/data),)
export DLB_TUNE_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: sweep test test-cluster

sweep: $(VENV)/.installed
	$(BIN)/dlb-tune sweep fcn

# Two stages: two xdist processes taking whole files, longest first (tests/conftest.py); then the
# autoscaling-cluster tests alone, on a quiet machine. Why: bench/results/ci_timing.md.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not cluster"
	$(MAKE) --no-print-directory test-cluster

test-cluster: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m cluster

# Reinstalled when pyproject.toml changes; the stamp marks a finished install. Bytecode is compiled
# here on all cores, not by every Ray worker at import (bench/results/ci_timing.md); `-`: a
# package's Python 2 file that does not compile is skipped, as pip skips it.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e ".[test]"
	-$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib
	touch $@
