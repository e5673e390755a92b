# The README's two commands. Each creates the environment when it is missing, then runs.
#   make sweep   the default fcn sweep, on $DLB_TUNE_DATA or the per-user data folder
#   make test    the tests (real data from ../shared/data or $DLB_TUNE_DATA)
#   make test-cluster  the autoscaling-cluster tests, left out of `make test` (CI time: see below)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# As if activated: tests and sweeps that start `dlb-tune` or `python` find the environment's.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: sweep test test-cluster

sweep: $(VENV)/.installed
	$(BIN)/dlb-tune sweep fcn

# Two test processes (pytest-xdist), a test file each at a time: the suite spends most of its wall
# time waiting (Ray and TensorBoard start-ups, sweeps' subprocesses, polling), about 0.6 of one
# CPU on average when run alone. Each process has its own session Ray. Files go out longest first
# (tests/conftest.py). `python -m pytest` alone runs them one by one, as mutation runs do.
# The autoscaling-cluster tests (-m cluster) pass in this run too, but took it from 10 to 15 min
# of pytest (a clean-clone .ci/run of 18.5 min, over the 15 min CI is held to): `make test-cluster`.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not cluster"

test-cluster: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m cluster

# Reinstalled when pyproject.toml changes (new dependencies); the stamp marks a finished install.
# The venv's own pip (23.x with Python 3.11) installs an editable pyproject project: no upgrade.
# Bytecode for the ~20,000 installed modules (torch, ray, sympy, moto, pandas...) is written by
# compileall on every core, not by pip on one. Not left to import time: with PYTHONDONTWRITEBYTECODE
# set (as on the CI machine) every Ray worker would compile torch and ray again. A file that does
# not compile (a package shipping Python 2 code: hpbandster does) is skipped, as pip skips it.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e ".[test]"
	-$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib
	touch $@
