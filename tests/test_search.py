"""What Optuna is told about each trial, and the space file's ``search:`` section.

Real FCN sweeps on a slice of MNIST, one trial at a time (2 CPUs per trial) so ASHA sees the
seeded proposals in order and which trials it stops does not depend on timing.
"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from dlb_tune.distributions import SpaceError
from dlb_tune.experiment import read_space
from dlb_tune.options import SweepOptions
from dlb_tune.space import default_space_file, load_space, parse_space
from dlb_tune.prepare import prepare_spec
from dlb_tune.sweep import run_sweep
from dlb_tune.tasks import all_tasks

# Hand-written: TPE settings (multivariate, 2 start-up trials) and two initial points, which the
# shipped fcn space (random sampling, the course's one point) lacks.
SPACE = """
task: fcn
metric: val_acc
mode: max
max_epochs: 3
grace_period: 1
reduction_factor: 2
num_samples: 6
search: {multivariate: true, n_startup_trials: 2}
initial:
  - {activation: sigmoid, lr: 0.1, momentum: 0.0, hidden_size: 32}  # a constant may be repeated
  - {activation: relu, lr: 0.01, momentum: 0.9}
params:
  activation: {choice: [sigmoid, relu]}
  lr: {loguniform: [3.0e-3, 0.2]}
  momentum: {choice: [0.0, 0.9]}
  hidden_size: 32
  batch_size: 64
"""

# lr far beyond stable for relu with momentum: every trial's loss turns non-finite (TrialError).
DIVERGING = """
task: fcn
metric: val_acc
mode: max
max_epochs: 2
num_samples: 2
params:
  activation: relu
  lr: {loguniform: [1.0e+4, 1.0e+5]}
  momentum: 0.9
  hidden_size: 32
  batch_size: 64
"""


def sweep(tmp_path, data_dir, text: str, name: str) -> dict:
    space = tmp_path / f"{name}.yaml"
    space.write_text(text)
    opts = SweepOptions(task="fcn", data_dir=str(data_dir), space=str(space), name=name,
                        storage=str(tmp_path / "runs"), cpus_per_trial=2, seed=3, limit=1500)
    return run_sweep(opts, echo=lambda line: None)


@pytest.fixture(scope="module")
def asha_sweep(tmp_path_factory, data_dir, ray_local):
    tmp = tmp_path_factory.mktemp("search")
    final = sweep(tmp, data_dir, SPACE, "asha")
    return final, pd.read_parquet(f"{final['experiment_dir']}/results.parquet")


def test_asha_stopped_trials_are_pruned_and_finished_ones_complete(asha_sweep):
    final, df = asha_sweep
    states = {s["trial_id"]: s["state"] for s in final["optuna_states"]}
    told = {r.trial_id: states[r.trial_id] for r in df.itertuples()}
    expected = {r.trial_id: {"stopped_early": "PRUNED", "completed": "COMPLETE"}[r.status] for r in df.itertuples()}
    assert told == expected
    assert set(told.values()) == {"PRUNED", "COMPLETE"}  # this sweep exercises both


def test_initial_points_run_first_and_the_first_is_reported_beside_the_winner(asha_sweep):
    final, df = asha_sweep
    proposed = [s["trial_id"] for s in final["optuna_states"]]  # in Optuna's order
    first = df.set_index("trial_id").loc[proposed[:2]].reset_index()
    configs = [{k: r[f"config/{k}"] for k in ("activation", "lr", "momentum")} for _, r in first.iterrows()]
    assert configs == [{"activation": "sigmoid", "lr": 0.1, "momentum": 0.0},
                       {"activation": "relu", "lr": 0.01, "momentum": 0.9}]
    course = final["course"]
    assert course["trial_id"] == first.iloc[0]["trial_id"]
    assert course["val_acc"] == pytest.approx(first.iloc[0]["best_val_acc"])


def test_search_section_is_written_back_for_resume(asha_sweep):
    final, _ = asha_sweep
    spec = read_space(final["experiment_dir"])
    # one trial at a time: no constant liar needed, and that choice is on record
    assert spec.search == {"sampler": "tpe", "multivariate": True, "n_startup_trials": 2, "constant_liar": False}


def test_diverging_trials_are_told_as_fail(tmp_path, data_dir, ray_local):
    final = sweep(tmp_path, data_dir, DIVERGING, "diverge")
    assert final["trials"]["errored"] == 2
    assert {s["state"] for s in final["optuna_states"]} == {"FAIL"}


def test_a_constant_wins_over_an_initial_value():
    spec = parse_space(yaml.safe_load(SPACE), "s.yaml", overrides=["lr=0.05"])
    assert spec.initial == [{"activation": "sigmoid", "momentum": 0.0}, {"activation": "relu", "momentum": 0.9}]


@pytest.mark.parametrize("task", sorted(all_tasks()))
def test_every_default_space_starts_with_the_course_config(task):
    spec = load_space(default_space_file(task))
    assert len(spec.initial) >= 1 and set(spec.initial[0]) == set(spec.searched())


@pytest.mark.parametrize("section, text, message", [
    ("initial", "[{activation: sigmoid, lr: 0.5, momentum: 0.0}]", "initial[0].lr: 0.5 lies outside the space's loguniform"),
    ("initial", "[{activation: sigmoid, lr: 0.1}]", "initial[0]: gives no value for momentum"),
    ("initial", "[{activation: sigmoid}]", "initial[0]: gives no value for lr, momentum; a point names every"),
    ("initial", "[{activation: sigmoid, lr: 0.1, momentum: 0.0, lrr: 1}]", "'lrr' is not a parameter of this space (did you mean 'lr'?)"),
    ("initial", "[{activation: swish, lr: 0.1, momentum: 0.0}]", "initial[0].activation: 'swish' lies outside"),
    ("initial", "[{activation: sigmoid, lr: fast, momentum: 0.0}]", "initial[0].lr: expected float"),
    ("initial", "{activation: sigmoid}", "'initial' must be a list"),
    ("initial", "[sigmoid]", "'initial' must be a list of {param: value} mappings"),
    ("search", "{sampler: cmaes}", "search.sampler 'cmaes' is not known; choose one of tpe, random"),
    ("search", "{sampler: random, n_startup_trials: 5}", "search.n_startup_trials is a TPE setting; sampler 'random' has none"),
    ("search", "{sampler: random, constant_liar: true}", "search.constant_liar is a TPE setting"),
    ("search", "{multivariat: true}", "unknown search key(s) ['multivariat']"),
    ("search", "{multivariate: 1}", "search.multivariate must be a bool"),
    ("search", "{n_startup_trials: -1}", "at least 0"),
    ("search", "{group: true, multivariate: false}", "search.group needs multivariate TPE"),
    ("search", "[tpe]", "'search' must be a mapping"),
])
def test_bad_initial_or_search_section_is_one_line(section, text, message):
    raw = yaml.safe_load(SPACE)
    raw[section] = yaml.safe_load(text)
    with pytest.raises(SpaceError) as err:
        parse_space(raw, "s.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["{multivariate: false}", "{group: true}", "{group: false, multivariate: false}"])
def test_a_valid_search_section_is_kept_as_written(text):
    raw = {**yaml.safe_load(SPACE), "search": yaml.safe_load(text)}
    assert parse_space(raw, "s.yaml").search == yaml.safe_load(text)


def test_a_point_outside_a_randint_or_naming_no_parameter_is_refused_as_it_is():
    raw = yaml.safe_load(SPACE)
    raw["params"]["hidden_size"] = {"randint": [32, 64]}
    point = {"activation": "sigmoid", "lr": 0.1, "momentum": 0.0, "hidden_size": 100}  # an integer, too large
    for extra, message in [({}, "s.yaml: initial[0].hidden_size: 100 lies outside the space's randint"),
                           ({"hidden_size": 40, "zzzz": 1}, "s.yaml: initial[0]: 'zzzz' is not a parameter of this space")]:
        raw["initial"] = [{**point, **extra}]
        with pytest.raises(SpaceError) as err:
            parse_space(raw, "s.yaml")
        assert str(err.value).startswith(message), err.value
    assert str(err.value).endswith("space"), "no close name: no suggestion"


def test_enqueue_runs_an_earlier_winner_before_the_initial_points(tmp_path):
    space, best = tmp_path / "space.yaml", tmp_path / "best.yaml"
    space.write_text(SPACE)
    winner = {"activation": "relu", "lr": 0.02, "momentum": 0.9, "hidden_size": 32, "batch_size": 64}
    best.write_text(yaml.safe_dump({"task": "fcn", "metric": "val_acc", "mode": "max", "params": winner}))
    spec = prepare_spec(SweepOptions(task="fcn", space=str(space), enqueue=str(best)))
    assert spec.initial[0] == {"activation": "relu", "lr": 0.02, "momentum": 0.9}  # constants dropped
    assert spec.initial[1:] == prepare_spec(SweepOptions(task="fcn", space=str(space))).initial
    best.write_text(yaml.safe_dump({"task": "fcn", "metric": "val_acc", "mode": "max", "params": {**winner, "lr": 0.9}}))
    with pytest.raises(SpaceError, match=r"--enqueue .*best.yaml.lr: 0.9 lies outside"):
        prepare_spec(SweepOptions(task="fcn", space=str(space), enqueue=str(best)))
    best.write_text(yaml.safe_dump({"task": "emotion", "metric": "val_acc", "mode": "max", "params": {"lr": 0.01}}))
    with pytest.raises(SpaceError, match=r"--enqueue .*best.yaml: a space for task 'emotion', not 'fcn'"):
        prepare_spec(SweepOptions(task="fcn", space=str(space), enqueue=str(best)))


def test_the_sampler_follows_the_search_section():
    import optuna

    from dlb_tune.search import make_sampler

    tpe = make_sampler({"n_startup_trials": 3}, seed=1, concurrency=2)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._n_startup_trials == 3 and tpe._constant_liar  # two trials at a time: the liar is on
    assert not make_sampler({}, seed=1, concurrency=1)._constant_liar
    rand = make_sampler({"sampler": "random"}, seed=1, concurrency=2)
    assert type(rand) is optuna.samplers.RandomSampler

    def first_lrs(sampler) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        return [study.ask().suggest_float("lr", 1e-3, 1.0, log=True) for _ in range(3)]

    assert first_lrs(make_sampler({"sampler": "random"}, 7, 2)) == first_lrs(make_sampler({"sampler": "random"}, 7, 2))


def test_a_trial_proposed_after_the_last_save_is_failed_in_the_journal_on_resume(tmp_path):
    """Tune saves the searcher with the experiment; a trial Optuna proposed after that save is
    unknown to the resumed sweep, and must not stay RUNNING in the journal for ever."""
    import optuna
    from ray import tune

    from dlb_tune.experiment import JOURNAL_FILE
    from dlb_tune.search import TruthfulOptunaSearch, journal_storage, make_sampler

    def searcher(**kwargs):
        return TruthfulOptunaSearch(space={"x": tune.uniform(0, 1)}, metric="m", mode="max", max_epochs=2, **kwargs)

    first = searcher(storage=journal_storage(str(tmp_path / JOURNAL_FILE), print), study_name="s",
                     sampler=make_sampler({}, 0, 1))
    first.suggest("a"), first.suggest("b")
    first.on_trial_complete("a", {"m": 0.6, "epoch": 2})
    first.save(str(tmp_path / "searcher.pkl"))
    first.suggest("c")  # proposed, then the driver dies before the next save
    resumed = searcher()
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.on_trial_complete("b", {"m": 0.7, "epoch": 2})
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / JOURNAL_FILE)))
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "FAIL")]


def test_the_sweeps_first_line_names_the_sampler_that_runs():
    from dlb_tune.sweep import sampler_name

    fcn, emotion = load_space(default_space_file("fcn")), load_space(default_space_file("emotion"))
    assert sampler_name(fcn, SweepOptions(task="fcn")) == "random"  # the space's evidence
    assert sampler_name(fcn, SweepOptions(task="fcn", sampler="tpe")) == "tpe"  # the command line wins
    assert sampler_name(emotion, SweepOptions(task="emotion")) == "tpe"
    assert sampler_name(emotion, SweepOptions(task="emotion", sampler="random")) == "random"


def test_a_sweep_run_again_with_its_seed_trains_the_same_trials_alike(tmp_path, data_dir, ray_local):
    """The shipped fcn space, shrunk, twice with one seed, one trial at a time: the same configs,
    trained from the same start (trials are seeded by their place in the sweep, not Tune's
    random trial ids), reach the same values."""
    from spaces import shrunk

    runs = []
    for name in ("first", "again"):
        space = shrunk("fcn", tmp_path / f"{name}.yaml", num_samples=3, max_epochs=2, grace_period=1,
                       time_budget_s=None, params={"hidden_size": 64, "num_layers": 1})
        final = run_sweep(SweepOptions(task="fcn", data_dir=str(data_dir), space=str(space), name=name,
                                       storage=str(tmp_path / "runs"), cpus_per_trial=2, seed=3, limit=1500),
                          echo=lambda line: None)
        df = pd.read_parquet(f"{final['experiment_dir']}/results.parquet")
        configs = df.filter(like="config/").astype(str).agg(" ".join, axis=1)
        runs.append(sorted(zip(configs, df["best_val_acc"], df["epochs"])))
    assert runs[0] == runs[1]
