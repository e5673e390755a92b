"""The benchmarks follow the task registry: a task registered anywhere is benchmarked, no edit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench import quality, sweep
from dlb_tune.tasks import Task, all_tasks, is_builtin
from dlb_tune.tasks.base import _REGISTRY


@dataclass
class TinyConfig:
    lr: float = 0.1  # step size
    width: int = 4  # units


class Tiny(Task):
    """A fifth task, known only to this test: no entry in bench/, no file in search_spaces/."""

    name = "tiny"
    Config = TinyConfig


@pytest.fixture
def tiny_space(monkeypatch, tmp_path):
    all_tasks()  # the real tasks first, so the registry is complete before the test adds one
    # tasks that other tests registered in this process (check-task's broken copies, the test
    # kit's fcn_counted) stay registered: hide them, whatever order the tests run in
    for name, cls in list(_REGISTRY.items()):
        if not is_builtin(cls):
            monkeypatch.delitem(_REGISTRY, name)
    monkeypatch.setitem(_REGISTRY, "tiny", Tiny)
    path = tmp_path / "tiny.yaml"
    path.write_text("task: tiny\nmetric: val_acc\nmode: max\nmax_epochs: 3\nnum_samples: 4\n"
                    "params:\n  lr: {loguniform: [0.01, 0.1]}\n  width: 4\n")
    return path


def test_runner_plans_every_registered_task(tiny_space, tmp_path):
    assert "tiny" in all_tasks()
    for task in all_tasks():
        space = ["--space", str(tiny_space)] if task == "tiny" else []
        runs = sweep.plan(task, sweep.parse([task, "--smoke", "--storage", str(tmp_path), *space]))
        assert runs[0].tag == "best" and runs[0].opts.task == task and runs[0].opts.cpus == sweep.CPUS
        baselines = sweep.EXTRAS.get(task, sweep.Extras()).baselines
        assert [r.tag for r in runs[1:]] == list(baselines)
        assert all(r.opts.task == task and r.opts.num_samples == 1 for r in runs[1:])


def test_smoke_report_goes_beside_its_storage(tmp_path):
    args = sweep.parse(["fcn", "--smoke", "--storage", str(tmp_path)])
    assert sweep.output_path(args) == tmp_path / "fcn-smoke.json"
    assert sweep.output_path(sweep.parse(["fcn"])) == sweep.RESULTS / "fcn.json"


def test_quality_figure_lists_every_registered_task(tiny_space):
    out = quality.figure(quick=True, data_dir="unused")
    assert list(out["tasks"]) == list(all_tasks())
    assert out["tasks"]["tiny"]["status"] == "missing"
    assert "python -m bench sweep tiny" in out["tasks"]["tiny"]["why"]


def test_unknown_task_or_baseline_is_one_line(capsys):
    for argv in (["nope"], ["vae", "--smoke", "--baselines", "nope"]):
        with pytest.raises(SystemExit) as exit_:
            sweep.main(argv)
        assert str(exit_.value).startswith("error: ") and "\n" not in str(exit_.value)
