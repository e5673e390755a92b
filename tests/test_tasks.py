"""The contract every task must meet, generated from the registry (no hand-kept task list)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dlb_tune.space import default_space_file, load_space
from dlb_tune.tasks import Task, TrialContext, all_tasks
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
