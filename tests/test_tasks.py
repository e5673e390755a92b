"""The contract every task must meet, generated from the registry (no hand-kept task list)."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from dlb_tune.space import default_space_file, load_space
from dlb_tune.tasks import Task, TrialContext, TrialError, Trials, TrialSummary, all_tasks
from dlb_tune.tasks._common import LR_SCHEDULES
from dlb_tune.tasks.base import config_fields

TASKS = list(all_tasks())


@pytest.fixture(scope="module", params=TASKS)
def smoke_task(request, data_dir):
    """A task built from its default space's constants plus its smoke overrides, on 64 real examples."""
    task_cls: type[Task] = all_tasks()[request.param]
    spec = load_space(default_space_file(request.param))
    consts = spec.constants()
    config = task_cls.Config(**{**consts, **task_cls.smoke})
    data = task_cls.load_data(data_dir, config, limit=64)
    return task_cls, config, data, spec


@pytest.mark.parametrize("name", TASKS)
def test_declarations_name_real_fields(name):
    task_cls = all_tasks()[name]
    fields = config_fields(task_cls)
    assert dataclasses.is_dataclass(task_cls.Config)
    assert task_cls.name == name
    assert set(task_cls.data_fields) <= set(fields)
    assert set(task_cls.smoke) <= set(fields)
    assert set(task_cls.allowed_values) <= set(fields)
    task_cls.check_config(task_cls.Config())  # every default runs and passes the task's own rules
    task_cls.check_config(task_cls.Config(**task_cls.smoke))


def test_one_epoch_reports_the_contract_metrics(smoke_task):
    task_cls, config, data, spec = smoke_task
    task = task_cls(config, data, TrialContext(max_epochs=2, seed=0))
    train = task.train_epoch(0)
    val = task.evaluate("val")
    test = task.evaluate("test")
    assert "loss" in train and "loss" in val and "loss" in test
    assert spec.metric.removeprefix("val_") in val, f"metric {spec.metric} not reported"
    for value in (*train.values(), *val.values(), *task.trial_metrics().values()):
        assert isinstance(value, (int, float)) and math.isfinite(value)


def test_state_dict_restores_the_same_model(smoke_task):
    task_cls, config, data, _ = smoke_task
    a = task_cls(config, data, TrialContext(max_epochs=2, seed=0))
    a.train_epoch(0)
    b = task_cls(config, data, TrialContext(max_epochs=2, seed=1))
    b.load_state_dict(a.state_dict())
    va, vb = a.evaluate("val"), b.evaluate("val")
    for key in va:
        assert va[key] == pytest.approx(vb[key], rel=1e-5, abs=1e-6), key


def test_lr_schedule_is_one_name_with_one_set_of_values(smoke_task):
    task_cls, config, data, _ = smoke_task
    fields = config_fields(task_cls)
    assert not {"schedule", "lr_scheduler", "scheduler"} & set(fields)
    if "lr_schedule" not in fields:
        return
    for value in LR_SCHEDULES:
        task_cls(dataclasses.replace(config, lr_schedule=value), data, TrialContext(max_epochs=2))
    with pytest.raises(TrialError, match="lr_schedule: 'constant' is not one of"):
        task_cls(dataclasses.replace(config, lr_schedule="constant"), data, TrialContext(max_epochs=2))


def test_trials_view_of_a_results_table():
    """What ``summarize`` sees: plain Python values, None where a trial never reported a column."""
    table = pd.DataFrame({"trial_id": ["a", "b"], "status": ["completed", "errored"], "epochs": [3, 0],
                          "config/lr": [0.1, 0.01], "best_val_acc": [0.9, None], "best_epoch": [2, None],
                          "val_acc": [0.85, None], "params": [100, None], "wall_s": [1.5, None],
                          "path": ["/runs/a", "/runs/b"], "node_id": ["n", "n"]})
    trials = Trials.from_table(table, "val_acc")
    assert trials.metric == "val_acc" and [t.trial_id for t in trials] == ["a", "b"]
    a, b = trials
    assert a == TrialSummary("a", "completed", {"lr": 0.1}, 0.9, 3, 1.5, {"val_acc": 0.85, "params": 100})
    assert type(a.epochs) is int and type(a.config["lr"]) is float
    assert (b.best, b.wall_s, b.metrics) == (None, None, {})


# --- TrialContext.batches: the shards data parallelism trains on --------------------------------


def test_batches_shuffle_by_default_and_cover_every_example_once():
    shuffled = torch.cat(list(TrialContext(seed=0).batches(10, 3)))
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    assert [b.tolist() for b in TrialContext().batches(7, 3, shuffle=False)] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("n, world, per_rank", [(12, 2, 2), (13, 2, 2), (15, 2, 2), (15, 3, 1)])
def test_batches_shard_disjointly_with_equal_steps_on_every_rank(n, world, per_rank):
    """Batches of 3: ranks take every world-th one of the same permutation; a remainder of
    batches that cannot go to every rank is dropped, so no rank waits on an all-reduce."""
    shards = [[b.tolist() for b in TrialContext(seed=4, rank=r, world_size=world).batches(n, 3)]
              for r in range(world)]
    assert [len(s) for s in shards] == [per_rank] * world
    whole = [b.tolist() for b in TrialContext(seed=4).batches(n, 3)]
    assert [b for r in range(world) for b in shards[r]] == [b for r in range(world) for b in whole[r::world][:per_rank]]
    assert sorted(i for s in shards for b in s for i in b) == sorted(i for b in whole[:per_rank * world] for i in b)
