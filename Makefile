# The README's two commands. Each creates the environment when it is missing, then runs.
#   make sweep   the default fcn sweep, on $DLB_TUNE_DATA or the per-user data folder
#   make test    the tests (real data from ../shared/data or $DLB_TUNE_DATA)
#   make test-cluster  the autoscaling-cluster tests, left out of `make test` (minutes of node launches)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# As if activated: tests and sweeps that start `dlb-tune` or `python` find the environment's.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: sweep test test-cluster

sweep: $(VENV)/.installed
	$(BIN)/dlb-tune sweep fcn

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test-cluster: $(VENV)/.installed
	$(BIN)/python -m pytest -q --cluster -m cluster

# Reinstalled when pyproject.toml changes (new dependencies); the stamp marks a finished install.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@
