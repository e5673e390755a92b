"""The YAML converter: what it accepts, what it turns into, and each rejection."""

from __future__ import annotations

import pytest
import yaml
from ray import tune
from ray.tune.search.sample import Categorical, Domain

from dlb_tune.distributions import Choice, Constant, LogUniform, QUniform, RandInt, SpaceError, Uniform
from dlb_tune.objective import Objective
from dlb_tune.space import builtin_spaces_dir, load_space, parse_space
from dlb_tune.tasks import all_tasks

# Hand-written spaces: one per rule of the converter, and the kinds (uniform, randint, quniform)
# no shipped space uses; test_every_task_has_a_valid_default_space reads the shipped files.
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
    assert spec.constants() == {"lr": 0.01, "activation": "tanh", "hidden_size": 64}
    assert spec.searched() == []


def case(rule, params, message, task="fcn"):
    return pytest.param(task, params, message, id=rule)


# One case per rule of space validation; the message fragment is what the user reads.
INVALID_PARAMS = [
    case("params-not-a-mapping", "lr", "'params' must be a mapping"),
    case("params-a-list", ["lr"], "'params' must be a mapping"),
    case("unknown-field", {"hidden_sise": 64}, "did you mean 'hidden_size'"),
    case("unknown-field-lists-the-fields", {"zzzz": 1},
         r"not a parameter of task 'fcn'; parameters: activation, hidden_size, num_layers, lr, "),
    case("value-not-scalar-or-mapping", {"lr": [0.1, 0.2]}, "give a value or one {distribution"),
    case("data-field-sampled", {"val_size": {"choice": [1000, 5000]}}, "shapes the data"),
    case("two-distribution-keys", {"lr": {"uniform": [0.1, 0.2], "loguniform": [0.1, 0.2]}}, "one key"),
    case("no-distribution-key", {"lr": {}}, "one key"),
    case("unknown-distribution", {"lr": {"gaussian": [0, 1]}}, "unknown distribution 'gaussian'"),
    case("args-not-a-list", {"lr": {"uniform": "0.1, 0.2"}}, "uniform takes a list"),
    case("choice-empty", {"activation": {"choice": []}}, "at least one value"),
    case("choice-not-scalar", {"activation": {"choice": [["relu"], "tanh"]}}, "must be scalars"),
    case("choice-repeats", {"hidden_size": {"choice": [64, 128, 64]}}, "64 more than once"),
    case("range-arity", {"lr": {"quniform": [0.0, 1.0]}}, r"quniform takes \[low, high, q\] numbers"),
    case("range-not-numbers", {"lr": {"uniform": [0.1, "0.2"]}}, r"uniform takes \[low, high\] numbers"),
    case("range-bool", {"lr": {"uniform": [False, 1]}}, r"uniform takes \[low, high\] numbers"),
    case("range-not-finite", {"lr": {"uniform": [0.0, float("inf")]}}, "finite numbers"),
    case("low-above-high", {"lr": {"uniform": [0.5, 0.1]}}, "low < high"),
    case("low-equals-high", {"lr": {"uniform": [0.1, 0.1]}}, "low < high"),
    case("loguniform-low-not-positive", {"lr": {"loguniform": [0.0, 0.1]}}, "loguniform needs low > 0"),
    case("randint-not-integers", {"hidden_size": {"randint": [1.5, 8]}}, "randint bounds must be integers"),
    case("quniform-step-not-positive", {"lr": {"quniform": [0.0, 1.0, 0.0]}}, "q must be > 0"),
    case("quniform-step-above-range", {"lr": {"quniform": [0.0, 0.1, 0.5]}}, "larger than the range"),
    case("quniform-low-off-grid", {"lr": {"quniform": [0.05, 1.0, 0.1]}}, r"multiples of q \(0.1\), got 0.05"),
    case("quniform-high-off-grid", {"lr": {"quniform": [0.0, 0.95, 0.1]}}, r"multiples of q \(0.1\), got 0.95"),
    case("low-bound-type", {"hidden_size": {"uniform": [1.5, 300]}}, "expected int, got 1.5"),
    case("high-bound-type", {"hidden_size": {"uniform": [16, 300.5]}}, "expected int, got 300.5"),
    case("float-draws-for-int-field", {"hidden_size": {"loguniform": [16, 512]}}, "draws floats for an int field"),
    case("choice-value-type", {"hidden_size": {"choice": [64, "wide"]}}, "expected int, got 'wide'"),
    case("constant-type", {"lr": "fast"}, "expected float, got 'fast'"),
    case("bool-field-float", {"bidirectional": 1.0}, "expected bool, got 1.0", "emotion"),
    case("task-rejects-constant", {"activation": "swish"}, "'swish' is not one of relu, tanh, sigmoid"),
    case("task-rejects-choice", {"activation": {"choice": ["relu", "swish"]}}, "'swish' is not one of"),
    case("task-rejects-range-end", {"num_layers": {"randint": [1, 5]}}, "5 is not one of 1, 2, 3", "emotion"),
    case("task-rejects-parsed-text", {"disc_dims": {"choice": ["10", "10,x"]}}, "comma-separated integers", "vae"),
    case("task-rejects-number-as-text", {"disc_dims": 1}, "at least 2 categories, got '1'", "vae"),
]


@pytest.mark.parametrize("task, params, message", INVALID_PARAMS)
def test_rejects_malformed_params(task, params, message):
    with pytest.raises(SpaceError, match=message) as e:
        parse_space({**BASE, "task": task, "params": params}, source="space.yaml")
    text = str(e.value)
    assert "\n" not in text and text.startswith("space.yaml: ")
    key = next(iter(params), None) if isinstance(params, dict) else None
    assert key is None or text.startswith(f"space.yaml: params.{key}: ") or "not a parameter" in text


def test_rejects_malformed_params_from_the_command_line(tmp_path, data_dir):
    """Issue 17's scalar ``params``, and issue 14's ``"10,x"``: exit 2, one line, before Ray starts."""
    from typer.testing import CliRunner

    from dlb_tune.cli import app

    for task, params, fragment in [("fcn", "params: lr", "'params' must be a mapping"),
                                   ("vae", "params:\n  disc_dims: {choice: ['10,x']}", "params.disc_dims: expected")]:
        bad = tmp_path / f"{task}.yaml"
        bad.write_text(f"task: {task}\nmetric: val_acc\nmode: max\n{params}\n")
        result = CliRunner().invoke(app, ["sweep", task, "--data-dir", str(data_dir), "--space", str(bad)])
        lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("top, message", [
    ({"task": "nosuchtask"}, "unknown task 'nosuchtask'"),
    ({"mode": "maximise"}, "mode must be"),
    ({"grace_period": 10}, "exceeds max_epochs"),
    ({"max_epoch": 3}, "unknown top-level key"),
    ({"max_epochs": "ten"}, "must be a number"),
    ({"target": "high"}, "'target' must be a number"),
    ({"objective": "acc-size"}, "unknown objective"),
    ({"objectives": ["acc-size"]}, r"objectives must map a name to \{metric: max\|min, ...\}"),
    ({"objectives": {"x": {"params": "min"}}}, "two or more"),
    ({"objectives": {"x": {"params": "min", "val_acc": "max"}}}, "must start with the sweep metric"),
    ({"search": {"sampler": "cmaes"}}, "search.sampler 'cmaes' is not known"),
])
def test_rejects_malformed_top_level(top, message):
    with pytest.raises(SpaceError, match=message) as e:
        parse_space({**BASE, **top}, source="s.yaml")
    assert str(e.value).startswith("s.yaml: ") and "\n" not in str(e.value)  # the file the user must edit


def test_missing_required_key():
    with pytest.raises(SpaceError, match="missing required key 'metric'"):
        parse_space({"task": "fcn", "mode": "max"})


def test_bad_override_syntax():
    with pytest.raises(SpaceError, match="key=value"):
        parse_space(BASE, overrides=["lr0.1"])


def test_multi_objective_goals():
    spec = spec_with(objectives={"acc-params": {"val_acc": "max", "params": "min"}}, objective="acc-params")
    assert spec.goals() == [Objective("val_acc", "max"), Objective("params", "min")]
    assert spec_with().goals() == [Objective("val_acc", "max")] == [spec_with().goal]


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
    """``--set disc_dims=10`` means "10": YAML reads a number, the field wants text."""
    spec = parse_space({**BASE, "task": "vae", "params": {"disc_dims": {"choice": [10, "10,10"]}}})
    assert spec.params["disc_dims"] == Choice(("10", "10,10"))
    spec = parse_space({**BASE, "task": "vae"}, overrides=["disc_dims=20"])
    assert spec.constants() == {"disc_dims": "20"}


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
        "lr": ("Float", "_LogUniform", 0.001, 0.08),
        "weight_decay": ("Float", "_LogUniform", 1e-05, 0.001),
        "batch_size": ("Categorical", "_Uniform", [32, 64]),
        "lr_schedule": ("Categorical", "_Uniform", ["onecycle", "cosine"]),
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
        "hidden_size": ("Categorical", "_Uniform", [128, 256, 512, 1024]),
        "num_layers": ("Categorical", "_Uniform", [1, 2]),
        "lr": ("Float", "_LogUniform", 0.01, 0.3),
        "momentum": ("Categorical", "_Uniform", [0.0, 0.9]),
        "weight_decay": ("Float", "_LogUniform", 1e-06, 0.001),
        "batch_size": ("Categorical", "_Uniform", [32, 64, 128]),
        "shift": ("Categorical", "_Uniform", [0, 1, 2]),
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


# --- one Distribution per kind: the conversions each consumer asks for -------------------------


def test_choice_conversions():
    from optuna.distributions import CategoricalDistribution

    d = Choice((64, 256, 128))
    assert d.to_optuna() == CategoricalDistribution([64, 256, 128])
    domain = d.hparams_domain()
    assert domain.dtype is float and sorted(domain.values) == [64.0, 128.0, 256.0]  # as Ray logs ints
    assert d.extremes() == [64, 256] and d.middle() == 256
    position, ticks = d.axis_scale()
    assert [position(v) for v in (64, 256, 128)] == [0.0, 0.5, 1.0]
    assert ticks == [(0.0, "64"), (0.5, "256"), (1.0, "128")]
    text = Choice(("relu", "tanh", "relu+"))
    assert text.extremes() == ["relu", "tanh", "relu+"]  # no order to take ends of: every value
    assert text.hparams_domain().dtype is str
    assert Choice((True, False)).extremes() == [True, False]  # bools are not numbers here
    assert str(d) == "choice [64, 256, 128]"


def test_constant_is_a_choice_of_one_except_for_tune():
    from optuna.distributions import CategoricalDistribution

    d = Constant(0.9)
    assert d.to_tune() == 0.9 and d.to_yaml() == 0.9 and str(d) == "0.9"
    assert d.to_optuna() == CategoricalDistribution([0.9])
    assert d.extremes() == [0.9] and d.middle() == 0.9
    position, ticks = d.axis_scale()
    assert position(0.9) == 0.5 and ticks == [(0.5, "0.9")]


def test_uniform_conversions():
    from optuna.distributions import FloatDistribution

    d = Uniform(0.0, 0.5)
    assert d.to_optuna() == FloatDistribution(0.0, 0.5)
    assert (d.hparams_domain().min_value, d.hparams_domain().max_value) == (0.0, 0.5)
    assert d.extremes() == [0.0, 0.5] and d.middle() == 0.25
    position, ticks = d.axis_scale()
    assert position(0.125) == 0.25 and ticks == [(0.0, "0"), (1.0, "0.5")]


def test_loguniform_conversions():
    from optuna.distributions import FloatDistribution

    d = LogUniform(1e-3, 1e-1)
    assert d.to_optuna() == FloatDistribution(1e-3, 1e-1, log=True)
    assert isinstance(d.to_tune().get_sampler(), tune.search.sample.LogUniform)
    assert d.middle() == pytest.approx(1e-2)  # the geometric middle
    position, _ = d.axis_scale()
    assert position(1e-2) == pytest.approx(0.5)  # a log axis


def test_randint_conversions():
    from optuna.distributions import IntDistribution

    d = RandInt(1, 3)
    assert (d.to_tune().lower, d.to_tune().upper) == (1, 4)  # both ends included, Tune's upper excluded
    assert d.to_optuna() == IntDistribution(1, 3)
    assert d.extremes() == [1, 3] and d.middle() == 2
    assert (d.hparams_domain().min_value, d.hparams_domain().max_value) == (1.0, 3.0)


def test_quniform_conversions():
    from optuna.distributions import FloatDistribution

    d = QUniform(0.0, 1.0, 0.25)
    assert d.to_tune().get_sampler().q == 0.25
    assert d.to_optuna() == FloatDistribution(0.0, 1.0, step=0.25)
    assert d.middle() == 0.5 and QUniform(0.0, 0.75, 0.25).middle() in (0.25, 0.5)  # on the grid
    assert d.extremes() == [0.0, 1.0]
    assert d.to_yaml() == {"quniform": [0.0, 1.0, 0.25]} and str(d) == "quniform [0.0, 1.0, 0.25]"


def test_every_kind_writes_back_the_yaml_it_was_read_from():
    """space.yaml in an experiment folder is read back by ``resume``: the same text as before."""
    params = {"activation": {"choice": ["relu", "tanh"]}, "lr": {"loguniform": [1e-3, 0.5]},
              "momentum": {"uniform": [0, 0.99]}, "hidden_size": {"randint": [32, 64]},
              "weight_decay": {"quniform": [0.0, 0.01, 0.001]}, "batch_size": 128}
    spec = spec_with(params)
    assert yaml.safe_load(spec.to_yaml())["params"] == params
    assert parse_space(yaml.safe_load(spec.to_yaml())).params == spec.params


# --- each top-level setting: read under its own name, its default, its minimum ------------------
# (key, default when absent, smallest value allowed or None, a value other than the default)
TOP_LEVEL = [
    ("max_epochs", 10, 1, 7),
    ("grace_period", 1, 1, 2),
    ("reduction_factor", 3, 2, 4),
    ("num_samples", 8, 1, 5),
    ("time_budget_s", None, 1, 90.0),
    ("target", None, None, 0.5),
    ("description", "", None, "why this space"),
]


@pytest.mark.parametrize("key, default, minimum, value", TOP_LEVEL)
def test_each_top_level_setting_is_read_with_its_default_and_minimum(key, default, minimum, value):
    plain = {k: v for k, v in BASE.items() if k != "max_epochs"}
    assert getattr(parse_space(plain), key) == default
    assert getattr(parse_space({**plain, key: value}), key) == value
    if minimum is not None:
        assert getattr(parse_space({**plain, key: minimum}), key) == minimum  # the minimum itself is fine
        with pytest.raises(SpaceError, match=rf"^s\.yaml: '{key}' must be at least {minimum}, got {minimum - 1}$"):
            parse_space({**plain, key: minimum - 1}, source="s.yaml")


def test_grace_period_may_equal_max_epochs():
    assert spec_with(grace_period=4).grace_period == 4


def test_an_objective_given_by_the_caller_wins_over_the_files():
    objectives = {"a": {"val_acc": "max", "params": "min"}, "b": {"val_acc": "max", "epoch_s": "min"}}
    assert spec_with(objectives=objectives, objective="a").objective == "a"
    spec = parse_space({**BASE, "objectives": objectives, "objective": "a"}, objective="b")
    assert spec.objective == "b"


@pytest.mark.parametrize("make, message", [
    (lambda: parse_space(["task", "fcn"], source="s.yaml"), r"^s\.yaml: expected a mapping at the top level$"),
    (lambda: load_space("/nonexistent/space.yaml"), r"^search-space file not found: /nonexistent/space\.yaml$"),
    (lambda: parse_space(BASE, overrides=["lr=[1,"]), r"^--set lr: cannot parse value '\[1,'$"),
    (lambda: spec_with(objective="x", objectives={"a": {"val_acc": "max", "params": "min"}}),
     r"unknown objective 'x'.*known: a\b"),
    (lambda: spec_with(objective="x", objectives={"a": {"val_acc": "max", "params": "min"},
                                                  "b": {"val_acc": "max", "epoch_s": "min"}}),
     r"unknown objective 'x' \(known: a, b\)$"),
    (lambda: spec_with(objective="x"), r"unknown objective 'x' \(known: none defined\)$"),
    (lambda: spec_with({"lr": {"gaussian": [0, 1]}}), r"unknown distribution 'gaussian'; known: choice, "),
    (lambda: spec_with({"lr": {"quniform": [2.0, 4.0, 3.0]}}), r"step"),
])
def test_errors_say_what_is_wrong_in_their_one_line(make, message):
    """The message is what the user sees (``error: ...``): a bare exception type is not enough."""
    with pytest.raises(SpaceError, match=message):
        make()


def test_set_splits_at_the_first_equals_sign():
    with pytest.raises(SpaceError, match=r"--set activation: 'a=b' is not one of"):
        parse_space(BASE, overrides=["activation=a=b"])


@pytest.mark.parametrize("text, message", [
    ("task: fcn\nmetric: val_acc\nparams: [unclosed\n", " (line 4): expected ',' or ']', but got '<stream end>'"),
    # no line mark, and PyYAML's own text runs over two lines
    ("task: fcn\x07\n", ": unacceptable character #x0007: special characters are not allowed"),
])
def test_invalid_yaml_is_one_line_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value) == f"{path}: not valid YAML{message}"


def test_axis_positions_away_from_zero():
    position, _ = Uniform(2.0, 4.0).axis_scale()
    assert position(3.0) == 0.5 and position(4.0) == 1.0
    position, _ = Choice(("a", "b", "c")).axis_scale()
    assert position("c") == 1.0 and position("not a choice") == 0.0


def test_a_quniform_step_as_wide_as_the_range_is_fine():
    assert spec_with({"lr": {"quniform": [2.0, 4.0, 2.0]}}).params["lr"] == QUniform(2.0, 4.0, 2.0)


def test_an_int_field_takes_a_whole_float():
    """YAML's ``64.0`` is the integer a user meant; ``64.5`` is refused (``low-bound-type``)."""
    assert spec_with({"hidden_size": 64.0}).constants() == {"hidden_size": 64.0}
    assert spec_with({"hidden_size": {"choice": [64.0, 128]}}).params["hidden_size"] == Choice((64.0, 128))


def test_load_space_names_the_file_and_passes_the_objective_on(tmp_path):
    path = tmp_path / "s.yaml"
    objectives = {"a": {"val_acc": "max", "params": "min"}, "b": {"val_acc": "max", "epoch_s": "min"}}
    path.write_text(yaml.safe_dump({**BASE, "objectives": objectives, "objective": "a"}, sort_keys=False))
    assert load_space(path).objective == "a"
    assert load_space(path, objective="b").objective == "b"
    path.write_text(yaml.safe_dump({**BASE, "mode": "maximise"}))
    with pytest.raises(SpaceError, match=rf"^{path}: mode must be 'max' or 'min', got 'maximise'$"):
        load_space(path)


def test_a_task_without_a_space_file_is_named_with_the_path_looked_at(tmp_path, monkeypatch):
    from dlb_tune import space
    from dlb_tune.space import default_space_file

    monkeypatch.setattr(space, "builtin_spaces_dir", lambda: tmp_path)
    with pytest.raises(SpaceError, match=rf"^task 'fcn' has no search-space file {tmp_path}/fcn\.yaml$"):
        default_space_file("fcn")


def test_a_checkout_reads_its_own_search_spaces():
    """Not an installed copy's: in a second worktree the editable install is another checkout."""
    from pathlib import Path

    from dlb_tune import space

    assert builtin_spaces_dir() == Path(space.__file__).resolve().parents[1] / "search_spaces"


def test_an_installed_package_reads_the_packaged_search_spaces(tmp_path, monkeypatch):
    """A wheel puts ``search_spaces/`` inside the package as ``dlb_tune.search_spaces``."""
    import importlib.util
    import sys

    from dlb_tune import space

    packaged = tmp_path / "site-packages" / "dlb_tune" / "search_spaces"
    packaged.mkdir(parents=True)
    (packaged / "__init__.py").touch()
    spec = importlib.util.spec_from_file_location("dlb_tune.search_spaces", packaged / "__init__.py",
                                                  submodule_search_locations=[str(packaged)])
    monkeypatch.setitem(sys.modules, "dlb_tune.search_spaces", importlib.util.module_from_spec(spec))
    monkeypatch.setattr(space, "__file__", str(packaged.parent / "space.py"))  # no checkout beside it
    assert builtin_spaces_dir() == packaged


def test_an_empty_description_is_not_written_back():
    assert "description" not in yaml.safe_load(spec_with().to_yaml())


# --- a task from outside the package may bend the rules the built-in ones keep --------------------


@pytest.fixture()
def outside_task(monkeypatch):
    """An FCN whose config has a field without a plain default, and a rule a range's ends do not
    decide (an even width): the space checks ``initial:`` points against it one by one."""
    from dataclasses import dataclass, field

    from dlb_tune.tasks import ConfigError
    from dlb_tune.tasks.base import _REGISTRY
    from dlb_tune.tasks.fcn import FCN, FCNConfig

    @dataclass
    class EvenConfig(FCNConfig):
        note: str = field(default_factory=str)

    class EvenFCN(FCN):
        name = "fcn_even"
        Config = EvenConfig

        @classmethod
        def validate(cls, name, value):
            super().validate(name, value)
            if name == "hidden_size" and value % 2:
                raise ConfigError(f"{value} is odd")

    monkeypatch.setitem(_REGISTRY, EvenFCN.name, EvenFCN)
    return EvenFCN


def test_an_outside_tasks_rules_hold_for_initial_points(outside_task):
    raw = {**BASE, "task": outside_task.name, "params": {"hidden_size": {"randint": [32, 64]}, "note": "baseline"}}
    assert parse_space({**raw, "initial": [{"hidden_size": 40}]}).initial == [{"hidden_size": 40}]
    assert parse_space(raw).constants() == {"note": "baseline"}  # no default to take a type from
    with pytest.raises(SpaceError, match=r"^s\.yaml: initial\[0\]\.hidden_size: 33 is odd$"):
        parse_space({**raw, "initial": [{"hidden_size": 33}]}, source="s.yaml")


@pytest.mark.parametrize("value, inside", [(0.6, True), (0.5, False), (1.2, False)])
def test_an_initial_point_on_a_quniform_lies_on_its_grid(value, inside):
    raw = {**BASE, "params": {"momentum": {"quniform": [0.0, 0.9, 0.3]}}, "initial": [{"momentum": value}]}
    if inside:
        assert parse_space(raw).initial == [{"momentum": value}]
    else:
        with pytest.raises(SpaceError, match=rf"initial\[0\]\.momentum: {value} lies outside the space's quniform"):
            parse_space(raw)


def test_exponents_are_numbers_in_files_and_on_the_command_line(tmp_path):
    """PyYAML reads ``1e-3`` as text (YAML 1.1 wants ``1.0e-3``); users write it on both."""
    path = tmp_path / "s.yaml"
    path.write_text("task: fcn\nmetric: val_acc\nmode: max\nparams:\n  lr: {loguniform: [1e-4, 1e-1]}\n")
    assert load_space(path).params["lr"] == LogUniform(1e-4, 1e-1)
    assert load_space(path, overrides=["lr=3e-3", "weight_decay=1E-5"]).constants() == {"lr": 3e-3,
                                                                                        "weight_decay": 1e-5}
