"""A trial restored from its checkpoint continues exactly where it stopped, for every task.

The shared ``epoch_loop`` is run as ``tune_trial`` runs it (a fresh process's view: context
seeded, torch seeded, task built), once straight through and once stopped after the first
epoch's checkpoint and restarted from it. The restarted run must report the next epochs, with
the same numbers as the straight run: model, optimiser (momentum, Adam moments), learning-rate
schedule and random number streams (shuffling, augmentation, dropout, sampling) all continue.
Generated from the task registry, like ``test_tasks.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlb_tune.space import default_space_file, load_space
from dlb_tune.tasks import TrialContext, all_tasks
from dlb_tune.trainable import STATE_FILE, epoch_loop, load_state

EPOCHS = 3
SEED = 11
TOLERANCE = 1e-5  # relative; the same operations in the same order should agree exactly


class Stop(Exception):
    """Raised from ``report``: the trial's process dies right after a checkpoint."""


def run_trial(task_cls, config, data, metric: str, mode: str, start_state=None, stop_after: int | None = None):
    """Reported metrics and the last checkpoint's state, as a (re)started trial sees them."""
    ctx = TrialContext(max_epochs=EPOCHS, seed=SEED)
    torch.manual_seed(ctx.seed)
    task = task_cls(config, data, ctx)
    reported, last_state = [], {}

    def report(metrics: dict, ckpt_dir: Path | None) -> None:
        reported.append(metrics)
        last_state["state"] = load_state(ckpt_dir / STATE_FILE)
        if metrics["epoch"] == stop_after:
            raise Stop

    try:
        epoch_loop(task, ctx, metric=metric, mode=mode, start_state=start_state, report=report)
    except Stop:
        pass
    return reported, last_state["state"]


@pytest.fixture(scope="module", params=list(all_tasks()))
def smoke_trial(request, data_dir):
    """A task from its default space's constants and its smoke overrides, on 96 real examples."""
    task_cls = all_tasks()[request.param]
    spec = load_space(default_space_file(request.param))
    config = task_cls.Config(**{**spec.constants(), **task_cls.smoke})
    return task_cls, config, task_cls.load_data(data_dir, config, limit=96), spec


def test_a_restored_trial_continues_exactly(smoke_trial):
    task_cls, config, data, spec = smoke_trial
    straight, end_state = run_trial(task_cls, config, data, spec.metric, spec.mode)
    _, checkpoint = run_trial(task_cls, config, data, spec.metric, spec.mode, stop_after=1)
    resumed, resumed_end = run_trial(task_cls, config, data, spec.metric, spec.mode, start_state=checkpoint)
    assert [m["epoch"] for m in resumed] == list(range(2, EPOCHS + 1))  # consecutive: none skipped or repeated
    for before, after in zip(straight[1:], resumed):
        for key, value in before.items():
            if key != "epoch_s":
                assert after[key] == pytest.approx(value, rel=TOLERANCE, abs=1e-7), (after["epoch"], key)
    assert_same_tensors(end_state["task"], resumed_end["task"])


def assert_same_tensors(a, b, where: str = "state") -> None:
    """Every tensor of two nested states (model, optimiser, schedule) agrees to TOLERANCE."""
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a.double(), b.double(), rtol=TOLERANCE, atol=1e-7), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where
