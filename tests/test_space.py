"""The YAML converter: what it accepts, what it turns into, and each rejection."""

from __future__ import annotations

import pytest
import yaml
from ray import tune

from dlb_tune.space import SpaceError, builtin_spaces_dir, load_space, parse_space
from dlb_tune.tasks import all_tasks

BASE = {"task": "fcn", "metric": "val_acc", "mode": "max", "max_epochs": 4, "params": {}}


def spec_with(params=None, **top):
    return parse_space({**BASE, **top, "params": params or {}})


def test_converts_every_distribution():
    spec = spec_with({
        "activation": {"choice": ["relu", "tanh"]},
        "lr": {"loguniform": [1e-3, 0.5]},
        "momentum": {"uniform": [0.0, 0.99]},
        "hidden_size": {"randint": [32, 64]},
        "weight_decay": {"quniform": [0.0, 0.01, 0.001]},
        "batch_size": 128,
    })
    space = spec.param_space()
    assert isinstance(space["activation"], tune.search.sample.Categorical)
    assert space["activation"].categories == ["relu", "tanh"]
    assert isinstance(space["lr"].get_sampler(), tune.search.sample.LogUniform)
    assert (space["momentum"].lower, space["momentum"].upper) == (0.0, 0.99)
    # randint is inclusive in YAML: Tune's upper bound is exclusive, so 64 must become 65
    assert (space["hidden_size"].lower, space["hidden_size"].upper) == (32, 65)
    assert space["weight_decay"].get_sampler().q == 0.001
    assert space["batch_size"] == 128
    assert spec.searched() == ["activation", "lr", "momentum", "hidden_size", "weight_decay"]


def test_set_overrides_fix_a_parameter_with_its_type():
    spec = parse_space({**BASE, "params": {"lr": {"loguniform": [1e-3, 0.5]}}},
                       overrides=["lr=0.01", "activation=tanh", "hidden_size=64"])
    assert spec.params == {"lr": 0.01, "activation": "tanh", "hidden_size": 64}
    assert spec.searched() == []


@pytest.mark.parametrize("params, message", [
    ({"hidden_sise": 64}, "did you mean 'hidden_size'"),
    ({"lr": {"gaussian": [0, 1]}}, "unknown distribution 'gaussian'"),
    ({"activation": {"choice": []}}, "at least one value"),
    ({"lr": {"uniform": [0.5, 0.1]}}, "low < high"),
    ({"lr": {"uniform": [0.1, 0.1]}}, "low < high"),
    ({"lr": {"loguniform": [0.0, 0.1]}}, "loguniform needs low > 0"),
    ({"hidden_size": {"randint": [1.5, 8]}}, "integers"),
    ({"lr": {"quniform": [0.0, 1.0]}}, "low, high, q"),
    ({"activation": {"choice": [["relu"], "tanh"]}}, "must be scalars"),
    ({"hidden_size": {"choice": [64, "wide"]}}, "expected int"),
    ({"lr": "fast"}, "expected float"),
    ({"lr": {"uniform": [0.1, 0.2], "loguniform": [0.1, 0.2]}}, "one key"),
    ({"val_size": {"choice": [1000, 5000]}}, "shapes the data"),
])
def test_rejects_malformed_params(params, message):
    with pytest.raises(SpaceError, match=message):
        spec_with(params)


@pytest.mark.parametrize("top, message", [
    ({"task": "nosuchtask"}, "unknown task 'nosuchtask'"),
    ({"mode": "maximise"}, "mode must be"),
    ({"grace_period": 10}, "exceeds max_epochs"),
    ({"max_epoch": 3}, "unknown top-level key"),
    ({"max_epochs": "ten"}, "must be a number"),
    ({"objective": "acc-size"}, "unknown objective"),
    ({"objectives": {"x": {"params": "min"}}}, "two or more"),
    ({"objectives": {"x": {"params": "min", "val_acc": "max"}}}, "must start with the sweep metric"),
])
def test_rejects_malformed_top_level(top, message):
    with pytest.raises(SpaceError, match=message):
        spec_with(**top)


def test_missing_required_key():
    with pytest.raises(SpaceError, match="missing required key 'metric'"):
        parse_space({"task": "fcn", "mode": "max"})


def test_bad_override_syntax():
    with pytest.raises(SpaceError, match="key=value"):
        parse_space(BASE, overrides=["lr0.1"])


def test_invalid_yaml_file_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: fcn\nparams:\n  lr: {loguniform: [1e-3, 0.5]\n  x: 1\n")
    with pytest.raises(SpaceError, match=r"not valid YAML \(line \d+\)"):
        load_space(path)


def test_multi_objective_pairs():
    spec = spec_with(objectives={"acc-params": {"val_acc": "max", "params": "min"}}, objective="acc-params")
    assert spec.objective_pairs() == [("val_acc", "max"), ("params", "min")]
    assert spec_with().objective_pairs() == [("val_acc", "max")]


@pytest.mark.parametrize("task", list(all_tasks()))
def test_every_task_has_a_valid_default_space(task):
    """Generated from the registry: a new task is covered without editing this file."""
    path = builtin_spaces_dir() / f"{task}.yaml"
    spec = load_space(path)
    assert spec.task == task
    assert spec.searched(), "a default space should search something"
    spec.base_config()  # constants build the task's config
    round_trip = parse_space(yaml.safe_load(spec.to_yaml()))
    assert round_trip.params == spec.params


def test_numbers_for_text_fields_become_text():
    spec = parse_space({**BASE, "params": {"activation": {"choice": ["relu", "tanh"]}}},
                       overrides=["lr_schedule=1"])
    assert spec.params["lr_schedule"] == "1"  # then rejected by the task, not mistyped by YAML
