# The README's two commands. Each creates the environment when it is missing, then runs.
#   make sweep   the default fcn sweep, on $DLB_TUNE_DATA or the per-user data folder
#   make test    the tests (real data from ../shared/data or $DLB_TUNE_DATA)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# As if activated: tests and sweeps that start `dlb-tune` or `python` find the environment's.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: sweep test

sweep: $(VENV)/.installed
	$(BIN)/dlb-tune sweep fcn

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# Reinstalled when pyproject.toml changes (new dependencies); the stamp marks a finished install.
# The venv's own pip (23.x with Python 3.11) installs an editable pyproject project: no upgrade.
# --no-compile: pip would write bytecode for all ~20,000 modules of torch, ray, pandas, moto...
# (most never imported); Python compiles the ones a run imports, once, on first import.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e ".[test]"
	touch $@
