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

# Two stages. First two test processes (pytest-xdist), a test file each at a time: the suite
# spends most of its wall time waiting (Ray and TensorBoard start-ups, sweeps' subprocesses,
# polling), about 0.6 of one CPU on average when run alone. Each process has its own session Ray.
# Files go out longest first (tests/conftest.py). `python -m pytest` alone runs them one by one,
# as mutation runs do. Then the autoscaling-cluster tests (-m cluster) in a process of their own,
# on a machine the first stage has left quiet: 2-3 minutes, where run beside the other tests
# (with a test cluster that then also launched and dropped a node every few seconds) they had
# stretched the first stage by 5 minutes.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not cluster"
	$(MAKE) --no-print-directory test-cluster

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
