"""A task of the user's own (issue 13, part 3): written by ``new-task`` outside the package, it
passes the shared contract, reaches Ray's workers by value when they cannot import it, and an
installed package exposes one through the ``dlb_tune.tasks`` entry point. Its sweep through
``--task-module`` and every command that reads it: tests/test_golden_path.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dlb_tune.tasks as registry
from dlb_tune import contract
from dlb_tune.cli import app
from dlb_tune.new_task import write_task
from dlb_tune.space import default_space_file
from dlb_tune.tasks import TaskModuleError, get_task, load_task_module

runner = CliRunner()


@pytest.fixture(scope="module")
def own_task(tmp_path_factory) -> Path:
    """``dlb-tune new-task owntask`` in a folder outside the package, not on sys.path."""
    folder = tmp_path_factory.mktemp("user_code")
    result = runner.invoke(app, ["new-task", "owntask", "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    return folder / "owntask.py"


def test_new_task_passes_the_contract_unchanged(own_task, data_dir):
    assert load_task_module(str(own_task)) == str(own_task.resolve())
    assert default_space_file("owntask") == own_task.with_suffix(".yaml")  # the space beside the module
    lines = []
    assert contract.run_checks("owntask", data_dir, lines.append) == 0, lines
    assert [line.split()[0] for line in lines] == ["ok"] * 7, lines


def test_task_module_reaches_a_worker_without_the_file(tmp_path):
    """A cluster node that lacks the module's file gets its text with the task's name."""
    import ray.cloudpickle

    from dlb_tune.tasks import portable_name

    write_task("fartask", tmp_path)
    load_task_module(str(tmp_path / "fartask.py"))
    pickled = ray.cloudpickle.dumps(portable_name("fartask"))
    (tmp_path / "fartask.py").unlink()
    code = ("import pickle, sys, inspect\nfrom dlb_tune.tasks import get_task\n"
            "name = pickle.loads(sys.stdin.buffer.read())\nprint(type(name).__name__, inspect.getfile(get_task(name)))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.run([sys.executable, "-c", code], input=pickled, capture_output=True, env=env, timeout=120)
    assert worker.returncode == 0, worker.stderr.decode()
    kind, path = worker.stdout.decode().split()
    assert kind == "str" and path.endswith("/fartask.py") and not path.startswith(str(tmp_path))


def test_entry_point_of_an_installed_package(tmp_path, monkeypatch, data_dir):
    """A package as pip leaves it in site-packages: the module, its space file as package data,
    and a dist-info whose entry_points.txt names the module in the ``dlb_tune.tasks`` group."""
    if os.environ.get("DLB_TUNE_MUTATION"):  # mutmut's copy of the package resolves space files elsewhere
        pytest.skip("mutation run: the space file of an installed task is looked up beside mutmut's copy")
    site = tmp_path / "site-packages"
    write_task("eptask", site / "eptask_pkg")
    (site / "eptask_pkg" / "__init__.py").write_text("")
    info = site / "eptask_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eptask-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dlb_tune.tasks]\neptask = eptask_pkg.eptask\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points", None)  # read the metadata again, as a new process would
    assert "eptask" in registry.task_names() and "eptask_pkg.eptask" not in sys.modules  # named, not imported
    assert default_space_file("eptask") == site / "eptask_pkg" / "eptask.yaml"
    task_cls = get_task("eptask")
    assert task_cls.__module__ == "eptask_pkg.eptask"
    assert default_space_file("eptask") == site / "eptask_pkg" / "eptask.yaml"
    contract.check_one_epoch(contract.Setup.load("eptask", data_dir))


def test_broken_task_modules_are_one_line(tmp_path):
    bad = tmp_path / "broken_task.py"
    bad.write_text(textwrap.dedent("""\
        import torch

        x = 1
        raise ValueError("no such layer")
    """))
    with pytest.raises(TaskModuleError, match=r"broken_task.py: line 4: ValueError: no such layer"):
        load_task_module(str(bad))
    with pytest.raises(TaskModuleError, match="task module not found"):
        load_task_module(str(tmp_path / "missing.py"))
    with pytest.raises(TaskModuleError, match="no module named 'no_such_pkg.tasks'"):
        load_task_module("no_such_pkg.tasks")
    result = runner.invoke(app, ["tasks", "--task-module", str(bad)])
    assert result.exit_code == 2 and result.output.startswith("error: cannot import"), result.output
