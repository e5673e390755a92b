"""The YAML converter: what it accepts, what it turns into, and each rejection."""

from __future__ import annotations

import pytest
import yaml
from ray import tune
from ray.tune.search.sample import Categorical, Domain

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


# Captured from the {kind: args} converter before the Distribution classes replaced it: the
# default spaces must reach Tune exactly as they did (class, sampler, bounds or categories, q).
DEFAULT_PARAM_SPACES = {
    "cnn": {
        "dataset": "grocery",
        "labels": "coarse",
        "image_size": 64,
        "depth": ("Categorical", "_Uniform", [2, 3, 4, 5, 6]),
        "base_width": ("Categorical", "_Uniform", [8, 12, 16, 32]),
        "width_growth": ("Categorical", "_Uniform", [1.5, 2.0]),
        "head": ("Categorical", "_Uniform", ["gap", "fc"]),
        "fc_hidden": ("Categorical", "_Uniform", [64, 128, 512]),
        "dropout": ("Float", "_Uniform", 0.0, 0.35),
        "optimizer": ("Categorical", "_Uniform", ["sgd", "adamw", "adam"]),
        "lr": ("Float", "_LogUniform", 0.002, 0.08),
        "weight_decay": ("Float", "_LogUniform", 1e-05, 0.001),
        "batch_size": ("Categorical", "_Uniform", [32, 64]),
        "schedule": ("Categorical", "_Uniform", ["onecycle", "cosine"]),
        "augment": True,
        "label_smoothing": 0.1,
        "tta": True,
    },
    "emotion": {
        "cell": ("Categorical", "_Uniform", ["rnn_tanh", "rnn_relu", "gru", "lstm"]),
        "bidirectional": ("Categorical", "_Uniform", [True, False]),
        "num_layers": ("Categorical", "_Uniform", [1, 2, 3]),
        "hidden_size": ("Categorical", "_Uniform", [32, 64, 128]),
        "pooling": ("Categorical", "_Uniform", ["last", "max", "last+max"]),
        "dropout": ("Float", "_Uniform", 0.0, 0.5),
        "emb_dropout": ("Float", "_Uniform", 0.0, 0.4),
        "embedding": ("Categorical", "_Uniform", ["glove", "random"]),
        "embedding_dim": 50,
        "freeze_embedding": ("Categorical", "_Uniform", [True, False]),
        "optimizer": ("Categorical", "_Uniform", ["adam", "adamw"]),
        "lr": ("Float", "_LogUniform", 0.0005, 0.01),
        "lr_schedule": "cosine",
        "weight_decay": ("Categorical", "_Uniform", [0.0, 1e-05, 0.0001]),
        "batch_size": ("Categorical", "_Uniform", [128, 256]),
        "grad_clip": ("Categorical", "_Uniform", [0.5, 1.0, 5.0]),
        "class_weights": False,
        "min_freq": 2,
        "max_len": 64,
    },
    "fcn": {
        "activation": ("Categorical", "_Uniform", ["sigmoid", "tanh", "relu"]),
        "hidden_size": ("Categorical", "_Uniform", [128, 256, 512]),
        "num_layers": ("Categorical", "_Uniform", [1, 2]),
        "lr": ("Float", "_LogUniform", 0.01, 0.3),
        "momentum": ("Categorical", "_Uniform", [0.0, 0.9]),
        "weight_decay": ("Float", "_LogUniform", 1e-06, 0.001),
        "batch_size": ("Categorical", "_Uniform", [64, 128]),
        "lr_schedule": "cosine",
    },
    "vae": {
        "cont_dim": ("Categorical", "_Uniform", [16, 32, 64]),
        "disc_dims": ("Categorical", "_Uniform", ["10", "10,10", "20", "40"]),
        "cont_capacity_max": ("Float", "_LogUniform", 5.0, 300.0),
        "disc_capacity_max": ("Float", "_Uniform", 0.5, 10.0),
        "gamma": ("Float", "_LogUniform", 1.0, 100.0),
        "capacity_iters": ("Categorical", "_Uniform", [1000, 3000, 10000, 100000]),
        "temperature": ("Float", "_Uniform", 0.3, 1.0),
        "lr": ("Float", "_LogUniform", 0.0002, 0.004),
        "batch_size": ("Categorical", "_Uniform", [32, 64, 128]),
    },
}


def tune_form(value):
    """A Tune domain as plain data: (domain class, sampler class, bounds or categories[, q])."""
    if not isinstance(value, Domain):
        return value
    sampler = value.get_sampler()
    q = getattr(sampler, "q", None)
    inner = sampler.sampler if q is not None else sampler
    bounds = (list(value.categories),) if isinstance(value, Categorical) else (value.lower, value.upper)
    return (type(value).__name__, type(inner).__name__, *bounds, *([q] if q is not None else []))


@pytest.mark.parametrize("task", sorted(DEFAULT_PARAM_SPACES))
def test_default_spaces_reach_tune_unchanged(task):
    space = load_space(builtin_spaces_dir() / f"{task}.yaml").param_space()
    got = {k: tune_form(v) for k, v in space.items()}
    assert got == DEFAULT_PARAM_SPACES[task]
    assert repr(got) == repr(DEFAULT_PARAM_SPACES[task])  # also the types: 1.0 is not 1, True is not 1
