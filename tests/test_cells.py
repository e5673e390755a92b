"""``compare_by``: every value of a categorical parameter gets an equal share of the trials and a
sampler of its own (dlb_tune/cells.py). The shipped emotion space compares its cells this way."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend
from ray.tune.search import Searcher
from spaces import shipped, shrunk
from typer.testing import CliRunner

from dlb_tune.cells import CellSearch
from dlb_tune.cli import app

runner = CliRunner()
CELLS = shipped("emotion")["params"]["cell"]["choice"]


def test_the_shipped_emotion_space_compares_its_cells():
    assert shipped("emotion")["compare_by"] == "cell" and len(CELLS) == 4


@pytest.fixture(scope="module")
def cell_sweep(tmp_path_factory, data_dir, ray_local):
    """The shipped emotion space, 6 trials of 2 epochs under ASHA (rungs at 1 and 2), each cell's
    best then re-run with 2 seeds; and its report."""
    root = tmp_path_factory.mktemp("cells")
    space = shrunk("emotion", root / "emotion.yaml", num_samples=6, max_epochs=2, grace_period=1,
                   reduction_factor=2, time_budget_s=None, params={"hidden_size": 16, "batch_size": 256})
    result = runner.invoke(app, ["sweep", "emotion", "--space", str(space), "--data-dir", str(data_dir),
                                 "--limit", "128", "--storage", str(root), "--name", "cells", "--seed", "5",
                                 "--seeds", "2"])
    assert result.exit_code == 0, result.output[-3000:]
    report = runner.invoke(app, ["report", "cells", "--storage", str(root)])
    assert report.exit_code == 0, report.output
    return root / "cells", result.output


def test_each_cell_gets_an_equal_share_under_asha(cell_sweep):
    exp, _ = cell_sweep
    trials = pd.read_parquet(exp / "results.parquet")
    counts = trials["config/cell"].value_counts()
    assert set(counts.index) == set(CELLS) and len(trials) == 6
    assert counts.max() - counts.min() <= 1, counts.to_dict()
    # which of 6 trials ASHA stops depends on the order results arrive; the next test makes it stop some
    assert set(trials["status"]) <= {"completed", "stopped_early"}


def test_each_cells_sampler_sees_only_its_own_trials(cell_sweep):
    exp, _ = cell_sweep
    trials = pd.read_parquet(exp / "results.parquet")
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(exp / "optuna.journal")))
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    assert set(studies) == {f"cells/cell={c}" for c in CELLS}
    for cell in CELLS:
        study = optuna.load_study(study_name=f"cells/cell={cell}", storage=storage)
        mine = trials[trials["config/cell"] == cell]
        assert all("cell" not in t.params for t in study.trials)
        # the same learning rates, in the same number: this study was told of this cell's trials only
        assert sorted(t.params["lr"] for t in study.trials) == pytest.approx(sorted(mine["config/lr"]))
    recorded = yaml.safe_load((exp / "space.yaml").read_text())
    assert recorded["compare_by"] == "cell"


def test_the_cell_table_gives_each_cells_best_its_spread_and_a_test_read_once(cell_sweep, data_dir):
    exp, output = cell_sweep
    trials = pd.read_parquet(exp / "results.parquet")
    final = json.loads((exp / "final.json").read_text())
    rows = {r["value"]: r for r in final["compared"]["rows"]}
    assert list(rows) == CELLS
    for cell, row in rows.items():
        mine = trials[trials["config/cell"] == cell]
        assert row["trials"] == len(mine) and row["epochs"] == mine["epochs"].sum()
        assert row["best"] == mine["best_val_acc"].max() and row["trial_id"] in set(mine["trial_id"])
        assert len(row["values"]) == 2 and row["mean"] == pytest.approx(sum(row["values"]) / 2)
    # the winner is still the best on validation, its test value the one the sweep read
    winner = final["best"]["trial_id"]
    [won] = [r for r in rows.values() if r["trial_id"] == winner]
    assert won["best"] == trials["best_val_acc"].max() and won["test"] == final["test"]["test_acc"]
    # another cell's test value: its best checkpoint evaluated on the test split, from the driver
    other = next(r for r in rows.values() if r["trial_id"] != winner)
    assert other["test"] == pytest.approx(checkpoint_test_metrics(exp, other["trial_id"], data_dir)["test_acc"])
    assert sorted(p.name for p in (exp / "test_report").iterdir() if p.is_dir()) == sorted(
        f"cell={r['value']}" for r in rows.values() if r["trial_id"] != winner)  # once per cell
    seeds = json.loads((exp / "seeds.json").read_text())
    assert {e["trial_id"] for e in seeds["ranking"]} == {r["trial_id"] for r in rows.values()}
    # printed after the re-runs, and in the report with its figure
    assert "mean +- std (2 seeds)" in output and "for comparison, not used for selection" in output
    report = (exp / "report.md").read_text()
    assert "## Compared by `cell`" in report and "(report/compared.png)" in report


def test_test_of_a_cells_best_is_read_from_its_checkpoint_not_its_results(cell_sweep):
    """No trial reports a test value: the table's test column comes from the driver alone."""
    exp, _ = cell_sweep
    assert not [c for c in pd.read_parquet(exp / "results.parquet").columns if c.startswith("test_")]


def checkpoint_test_metrics(exp, trial_id: str, data_dir) -> dict:
    """The test metrics of a trial's best checkpoint, evaluated here as the sweep's driver does."""
    from dlb_tune.best import trial_config
    from dlb_tune.experiment import load_experiment
    from dlb_tune.options import SweepOptions
    from dlb_tune.prepare import load_data
    from dlb_tune.trainable import evaluate_checkpoint

    e = load_experiment(exp)
    config = trial_config(e.trials.set_index("trial_id").loc[trial_id])
    data = load_data(e.spec, SweepOptions(task="emotion", data_dir=str(data_dir), limit=128))
    with tempfile.TemporaryDirectory() as out:
        return evaluate_checkpoint("emotion", config, data, e.checkpoint(trial_id), Path(out), e.spec.max_epochs)


# --- the searcher alone ----------------------------------------------------------------------------


class Recorder(Searcher):
    """A value's searcher that proposes its points, then a numbered config, and records what it is told."""

    def __init__(self, value, points):
        super().__init__(metric="val_acc", mode="max")
        self.value, self.points, self.told, self.n = value, list(points), [], 0

    def set_search_properties(self, metric, mode, config, **spec):
        self.space = config
        return True

    def suggest(self, trial_id):
        self.n += 1
        return self.points.pop(0) if self.points else {"lr": self.n}

    def on_trial_result(self, trial_id, result):
        self.told.append(("result", trial_id))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append(("complete", trial_id))


def test_trials_are_dealt_evenly_initial_points_first_and_results_go_to_their_owner():
    points = [{"cell": "lstm", "lr": 0.002}, {"cell": "gru", "lr": 0.01}]
    search = CellSearch("cell", CELLS, Recorder, points_to_evaluate=points)
    assert search.set_search_properties("val_acc", "max", {"cell": object(), "lr": object()})
    assert all(set(s.space) == {"lr"} for s in search.searchers)  # the compared parameter is not searched
    configs = [search.suggest(f"t{i}") for i in range(10)]
    assert configs[:2] == points  # the space's initial points run first, each in its own cell
    assert sorted(search.shares().values()) == [2, 2, 3, 3]
    for i, config in enumerate(configs):
        search.on_trial_result(f"t{i}", {"val_acc": 0.5})
        search.on_trial_complete(f"t{i}", {"val_acc": 0.5})
    for value, searcher in zip(CELLS, search.searchers):
        mine = {f"t{i}" for i, c in enumerate(configs) if c["cell"] == value}
        assert {t for _, t in searcher.told} == mine and len(searcher.told) == 2 * len(mine)


def test_shares_hold_while_the_shipped_spaces_asha_stops_one_cells_trials():
    """The default emotion sweep's scheduler and dealing, driven step by step: LSTM (worst here) is
    stopped at every rung it can be, which frees its slots soonest; its share must not grow."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from dlb_tune.engine import make_scheduler
    from dlb_tune.options import SweepOptions
    from dlb_tune.prepare import prepare_spec

    opts = SweepOptions(task="emotion")
    spec = prepare_spec(opts)
    asha = make_scheduler(spec, opts)
    search = CellSearch(spec.compare_by, CELLS, Recorder)
    search.set_search_properties(spec.metric, spec.mode, {"cell": object(), "lr": object()})
    quality = {"lstm": 0.3, "gru": 0.5, "rnn_tanh": 0.6, "rnn_relu": 0.7}
    running, started, ended = {}, 0, {}
    while running or started < spec.num_samples:
        while len(running) < 4 and started < spec.num_samples:  # 4 trials at once
            trial = SimpleNamespace(trial_id=f"t{started}", config=search.suggest(f"t{started}"), epoch=0)
            asha.on_trial_add(None, trial)
            running[trial.trial_id], started = trial, started + 1
            assert max(search.counts) - min(search.counts) <= 1, search.shares()
        for trial in list(running.values()):
            trial.epoch += 1
            result = {"epoch": trial.epoch, spec.metric: quality[trial.config["cell"]] + 0.01 * trial.epoch}
            search.on_trial_result(trial.trial_id, result)
            if asha.on_trial_result(None, trial, result) == TrialScheduler.STOP or trial.epoch == spec.max_epochs:
                asha.on_trial_complete(None, trial, result)
                search.on_trial_complete(trial.trial_id, result)
                ended[running.pop(trial.trial_id).trial_id] = trial
    assert sorted(search.shares().values()) == [10, 10, 10, 10]
    stopped = {t: ended[t].config["cell"] for t in asha.stopped}
    assert "lstm" in stopped.values() and len(stopped) >= 5, stopped
    for value, searcher in zip(CELLS, search.searchers):  # each stop was told to its cell's searcher
        assert {t for kind, t in searcher.told if kind == "complete"} == {
            t for t, trial in ended.items() if trial.config["cell"] == value}


def test_compare_by_a_number_or_with_fewer_trials_than_values_is_one_line(tmp_path, data_dir):
    # hand-written change: compare_by pointed at a continuous parameter, which no shipped space does
    raw = shipped("emotion") | {"compare_by": "lr"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for args, message in [
        (["--space", str(tmp_path / "bad.yaml")], "compare_by 'lr' must name a categorical parameter"),
        (["--num-samples", "3"], "compare_by 'cell' has 4 values but the sweep has 3 trials"),  # 1 given point
    ]:
        result = runner.invoke(app, ["sweep", "emotion", "--data-dir", str(data_dir), "--storage",
                                     str(tmp_path / "runs"), *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not list((tmp_path / "runs").glob("*"))  # refused before anything was written or started


def test_fixing_the_compared_parameter_or_running_given_points_only_is_an_ordinary_sweep():
    from dlb_tune.options import SweepOptions
    from dlb_tune.prepare import prepare_spec

    spec = prepare_spec(SweepOptions(task="emotion", overrides=["cell=gru"], num_samples=2))
    assert spec.compare_by is None and spec.num_samples == 2
    # and so does a sweep of given points only: here the course's config, trained alone
    spec = prepare_spec(SweepOptions(task="emotion", num_samples=1))
    assert spec.compare_by is None and len(spec.initial) == 1
