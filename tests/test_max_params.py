"""``max_params``: a configuration whose model has more parameters is never trained; the searcher
refuses it before the trial starts, tells Optuna, samples again and counts it (issue 29)."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from spaces import shipped, shrunk
from typer.testing import CliRunner

from dlb_tune import search
from dlb_tune.cli import app
from dlb_tune.distributions import SpaceError
from dlb_tune.options import SweepOptions
from dlb_tune.param_limit import param_limit
from dlb_tune.prepare import prepare_spec
from dlb_tune.search import REJECTED_ATTR
from dlb_tune.space import parse_space

runner = CliRunner()
LIMIT = 30_000  # a third of cnn_small's nets are under it; its initial point (72K) is over
INITIAL = shipped("cnn", "cnn_small")["initial"][0]


def small_spec(*overrides: str, **sizes):
    return prepare_spec(SweepOptions(task="cnn", space="cnn_small", overrides=list(overrides), **sizes))


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


# --- the space file and --set -----------------------------------------------------------------------


def test_max_params_comes_from_the_file_or_from_set_and_is_recorded():
    spec = small_spec()
    assert spec.max_params == 100_000 and "max_params" not in spec.params
    assert small_spec("max_params=2.5e4").max_params == 25_000  # a whole number written as a float
    assert small_spec("max_params=null").max_params is None  # --set lifts it
    assert parse_space(yaml.safe_load(spec.to_yaml()), recorded=True).max_params == 100_000  # space.yaml


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "lots", "true"])
def test_a_bad_max_params_is_one_line_and_exit_2_before_ray_starts(value, tmp_path, data_dir):
    result = runner.invoke(app, ["sweep", "cnn", "--space", "cnn_small", "--set", f"max_params={value}",
                                 "--data-dir", str(data_dir), "--storage", str(tmp_path / "runs")])
    line = one_line_error(result)
    assert line.startswith("error: --set max_params must be a positive whole number of parameters"), line
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_bad_max_params_in_the_file_names_the_file(tmp_path, data_dir):
    path = shrunk("cnn", tmp_path / "small.yaml", space="cnn_small", max_params="100K")
    line = one_line_error(runner.invoke(app, ["sweep", "cnn", "--space", str(path), "--data-dir", str(data_dir),
                                              "--storage", str(tmp_path / "runs")]))
    assert line == (f"error: {path}: max_params must be a positive whole number of parameters such as 100000, "
                    f"got '100K'")


def test_a_task_that_cannot_count_its_parameters_refuses_max_params(tmp_path, data_dir):
    line = one_line_error(runner.invoke(app, ["sweep", "fcn", "--set", "max_params=50000", "--data-dir",
                                              str(data_dir), "--storage", str(tmp_path / "runs")]))
    assert "max_params needs each model's size before it trains, and task 'fcn' cannot count it" in line


def test_a_space_of_one_configuration_over_the_limit_is_refused():
    fixed = [f"{k}={json.dumps(v)}" for k, v in INITIAL.items()]  # every searched parameter fixed: one net
    with pytest.raises(SpaceError, match=rf"^max_params {LIMIT}: the space's one configuration has 72474 parameters"):
        small_spec(*fixed, f"max_params={LIMIT}")
    assert small_spec(*fixed, "max_params=72474").max_params == 72474  # at the limit is fine


# --- the searcher alone: proposals, what Optuna is told ---------------------------------------------


def searcher(spec, tmp_path):
    from dlb_tune.engine import make_searcher

    s = make_searcher(spec, SweepOptions(task="cnn", name="s", storage=str(tmp_path), seed=3), 1, echo=lambda _: None)
    assert s.set_search_properties(spec.metric, spec.mode, spec.param_space())
    return s


def proposals(s, spec, n: int) -> list[dict]:
    configs = []
    for i in range(n):
        configs.append(s.suggest(f"t{i}"))
        s.on_trial_complete(f"t{i}", {"val_acc": 0.1 + 0.01 * i, "epoch": spec.max_epochs})
    return configs


def rejected_trials(study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if REJECTED_ATTR in t.user_attrs]


def test_the_searcher_proposes_only_nets_within_max_params(tmp_path):
    spec = small_spec(f"max_params={LIMIT}")
    limit, s = param_limit(spec), searcher(spec, tmp_path)
    configs = proposals(s, spec, 12)
    assert all(limit.count(c) <= LIMIT for c in configs)
    rejected = rejected_trials(s._ot_study)
    assert s.rejected() == len(rejected) > 0
    assert rejected[0].number == 0 and rejected[0].params == INITIAL  # the space's initial point: 72K, refused
    for t in rejected:  # told PRUNED before any result, with its size, which is over the limit
        assert t.state == TrialState.PRUNED and not t.intermediate_values
        assert t.user_attrs[REJECTED_ATTR] == limit.count(t.params) > LIMIT
    told = {r["number"] for r in s.trial_states()}  # the trials Tune was given: none of the refused
    assert len(told) == 12 and not told & {t.number for t in rejected}


def test_max_params_and_compare_by_compose(tmp_path):
    """Each compared value's own sampler refuses what is over the limit, counting the value's own
    size; the values keep equal shares. Hand-written change: no shipped space compares blocks."""
    raw = shipped("cnn", "cnn_small") | {"compare_by": "block", "max_params": LIMIT}
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = prepare_spec(SweepOptions(task="cnn", space=str(tmp_path / "compare.yaml")))
    s = searcher(spec, tmp_path)
    configs = proposals(s, spec, 12)
    assert all(param_limit(spec).count(c) <= LIMIT for c in configs)
    assert s.shares() == {"separable": 6, "conv": 6}
    assert s.rejected() == sum(len(rejected_trials(v._ot_study)) for v in s.searchers) > 0


def test_a_limit_no_net_meets_ends_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(search, "MAX_REJECTED_IN_A_ROW", 15)  # the smallest net of the space has 3,863
    spec = small_spec("max_params=1000")
    with pytest.raises(SpaceError, match=r"^max_params 1000: 15 configurations in a row had more parameters "
                                         r"\(the smallest \d+\); raise max_params"):
        searcher(spec, tmp_path).suggest("t0")


# --- a real sweep -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_sweep(tmp_path_factory, data_dir, ray_local):
    """cnn_small, 6 trials of 2 epochs on 64 images a split, under a limit that most of the space's
    nets (and its initial point) exceed; and its report."""
    root = tmp_path_factory.mktemp("max_params")
    space = shrunk("cnn", root / "cnn_small.yaml", space="cnn_small", num_samples=6, max_epochs=2, grace_period=1,
                   time_budget_s=None, max_params=LIMIT)
    result = runner.invoke(app, ["sweep", "cnn", "--space", str(space), "--data-dir", str(data_dir), "--limit", "64",
                                 "--storage", str(root), "--name", "small", "--seed", "1", "--cpus", "2"])
    assert result.exit_code == 0, result.output[-3000:]
    report = runner.invoke(app, ["report", "small", "--storage", str(root)])
    assert report.exit_code == 0, report.output
    return root / "small", result.output


def test_no_trial_that_ran_exceeds_max_params_and_the_refused_are_counted(limited_sweep):
    exp, output = limited_sweep
    trials = pd.read_parquet(exp / "results.parquet")
    final = json.loads((exp / "final.json").read_text())
    assert len(trials) == 6 and final["trials"]["errored"] == 0
    assert (trials["params"] <= LIMIT).all(), trials[["trial_id", "params"]]
    journal = optuna.storages.JournalStorage(JournalFileBackend(str(exp / "optuna.journal")))
    rejected = rejected_trials(optuna.load_study(study_name="small", storage=journal))
    assert final["trials"]["rejected"] == len(rejected) > 0 and final["max_params"] == LIMIT
    assert all(t.state == TrialState.PRUNED and t.user_attrs[REJECTED_ATTR] > LIMIT for t in rejected)
    assert not {s["number"] for s in final["optuna_states"]} & {t.number for t in rejected}
    assert "course" not in final  # the space's initial point (72K) never ran
    words = " ".join(output.split())
    assert f"rejected before training: {len(rejected)} configuration(s) over max_params {LIMIT}" in words
    assert f"- {len(rejected)} configuration(s) over max_params {LIMIT} rejected before training" in (
        exp / "report.md").read_text()
