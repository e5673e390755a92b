"""Shared fixtures: the real data folder and one local Ray instance for the whole session.

In CI (``CI=true``) a skipped test fails: a missing data folder, data subset or browser there means
the run did not test what it claims to. Elsewhere skips stay, with their reason in the summary (-ra).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from dlb_tune import places

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _no_skip_in_ci(report):
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"error: {reason.removeprefix('Skipped: ')} (CI=true: a skip fails the run)"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _no_skip_in_ci((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):  # a whole module skipped (importorskip at its top)
    return _no_skip_in_ci((yield))


def _deselect(config, items, marker: str) -> None:
    dropped = [item for item in items if item.get_closest_marker(marker)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker(marker)]


# The longest modules (seconds in a CI run's --durations), first. `make test`'s two xdist processes
# take whole files in collection order (--dist loadfile --no-loadscope-reorder): the long ones start
# early and the many short ones even out the end, instead of a long one starting last.
# test_autoscaling (its own autoscaling cluster, node launches; `make test` runs it in a stage of
# its own) goes first in a run that includes it: one process spends most of the run on it.
LONGEST_FIRST = ("test_autoscaling", "test_golden_path", "test_distributed", "test_promises", "test_storage",
                 "test_datasets", "test_watch", "test_interrupts", "test_cells", "test_readme", "test_instant",
                 "test_cnn", "test_emotion", "test_search", "test_experiment", "test_cli", "test_board")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each file's order kept
    _deselect_unrunnable(config, items)


def _deselect_unrunnable(config, items):
    """Tests marked ``gpu`` need CUDA. Without it they are deselected, not skipped: a CPU-only CI
    run (where a skip fails) cannot run them and is not meant to; ``bench/gpu_check.sh`` runs them
    on a CUDA machine, where they must pass."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if not torch.cuda.is_available():
        _deselect(config, items, "gpu")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real data: $DLB_TUNE_DATA, else ../shared/data beside the project (as CI lays it out)."""
    path = places.checkout_data_dir(ROOT)
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}; set DLB_TUNE_DATA")
    return path


@pytest.fixture(autouse=True)
def _no_ray_in_mutation_runs(monkeypatch):
    """A mutant that lets bad input through to a sweep must fail at once, not run the sweep in
    mutmut's forked worker (which no CPU-time limit stops: the work happens in Ray's processes)."""
    if os.environ.get("DLB_TUNE_MUTATION"):
        import ray

        def refuse(*args, **kwargs):
            raise RuntimeError("mutation run: this test reached ray.init")

        monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance with 2 CPUs, started once and shared by every sweep test."""
    if os.environ.get("DLB_TUNE_MUTATION"):  # see bench/mutation.py
        pytest.skip("mutation run: Ray workers would run the unmutated code")
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=True, dashboard_host="127.0.0.1",
             log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture
def storage(tmp_path) -> Path:
    return tmp_path / "runs"


def _debian_program(program: str, package: str) -> str:
    """A program installed beforehand from Debian (.ci/run does it), never at test time."""
    path = shutil.which(program)
    if not path:
        pytest.skip(f"{program} is not installed (apt-get install {package}; .ci/run does this)")
    return path


@pytest.fixture(scope="session")
def chromium():
    return _debian_program("chromium", "chromium")


@pytest.fixture(scope="session")
def chromedriver():
    """Selenium's driver for chromium, of the same version as Debian's chromium."""
    return _debian_program("chromedriver", "chromium-driver")
