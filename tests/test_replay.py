"""The replay benchmark (bench/replay.py): a replayed sweep reports exactly what the table holds.

A tiny hand-made table (4 grid points x 3 epochs) replayed through the real Tune stack at a small
scale. What Optuna is told about stopped trials and that ``initial:`` configs run first are
tested on real sweeps in tests/test_search.py.
"""

from __future__ import annotations

import pytest

from bench.replay import (BY_NAME, Setup, default_strategy, in_process_run, make_setup, overhead_setup, replay_spec,
                          run_one, tune_run, variant)
from bench.replay_report import summarize, time_to_target
from bench.tables import ReplayDiverged, Table, grid_points, read_table, replay_divergence, write_table

# Hand-written: the replay draws from a recorded table's grid, here a tiny one of 4 points, where
# the shipped fcn space spans 192.
SPACE = """
task: fcn
metric: val_acc
mode: max
max_epochs: 16
grace_period: 1
reduction_factor: 2
num_samples: 4
time_budget_s: 600
params:
  activation: {choice: [sigmoid, relu]}
  batch_size: {choice: [32, 64]}
  hidden_size: {choice: [32, 64]}
  lr: {loguniform: [0.01, 0.1]}
initial:
  - {activation: relu, batch_size: 64, hidden_size: 64, lr: 0.05}
"""
GRID = {"activation": ["sigmoid", "relu"], "batch_size": [32, 64]}
EPOCHS = 3


@pytest.fixture
def tiny(tmp_path):
    rows = [{"point": i, "epoch": e, **p, "val_acc": 0.1 * i + 0.01 * e + 0.001, "epoch_s": 1.0 + i + 0.5 * e}
            for i, p in enumerate(grid_points(GRID)) for e in range(1, EPOCHS + 1)]
    meta = {"task": "fcn", "metric": "val_acc", "mode": "max", "max_epochs": EPOCHS, "grid": GRID,
            "fixed": {"hidden_size": 32}, "time_budget_s": 1e6}  # no budget cut on a busy machine
    table = read_table(write_table(tmp_path / "tiny.parquet", rows, meta))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return table, replay_spec(table, space)


def test_replay_reports_the_table_exactly(tiny, tmp_path, ray_local):
    table, spec = tiny
    rows, _ = tune_run(BY_NAME["random-fifo"], Setup(table, spec, scale=0.002, table_id="tiny"), seed=1,
                    storage=tmp_path / "runs")
    recorded = {(r.point, r.epoch): r.val_acc for r in table.frame.itertuples()}
    assert [(e, p, v) for _, v, e, p in rows] == [(e, p, recorded[p, e]) for _, _, e, p in rows]
    per_point: dict[int, list[int]] = {}  # random search may draw a point twice: its epochs twice
    for _, _, epoch, point in rows:
        per_point.setdefault(point, []).append(epoch)
    assert all(sorted(epochs) == sorted(list(range(1, EPOCHS + 1)) * (len(epochs) // EPOCHS))
               for epochs in per_point.values())
    assert len(rows) == spec.num_samples * EPOCHS  # FIFO: every trial runs every epoch


def test_hyperband_halves_its_brackets(tiny, tmp_path, ray_local):
    """Two trials run at a time, yet HyperBand's bracket holds all four: its halving stops the
    worse half early (capped at two live trials, each bracket held two and kept both to the end)."""
    table, spec = tiny
    rows, _ = tune_run(BY_NAME["random-hyperband"], Setup(table, spec, scale=0.002, table_id="tiny"), seed=1,
                       storage=tmp_path / "runs")
    assert 0 < len(rows) < spec.num_samples * EPOCHS
    assert max(epoch for _, _, epoch, _ in rows) == EPOCHS


def test_a_strategys_rungs_reach_the_scheduler(tiny, ray_local):
    """A variant's grace period replaces the space file's (1 there): ASHA stops no trial before
    epoch 2, so every trial that reported epoch 1 reports epoch 2 too; the record says what ran."""
    table, spec = tiny
    strategy = variant(BY_NAME["random-asha"], grace_period=2, reduction_factor=3, n_startup_trials=3)
    assert strategy.name == "random-asha-g2-rf3-ns3"
    rec = run_one(strategy, Setup(table, spec, scale=0.002, table_id="tiny"), seed=1)
    epochs = [epoch for _, _, epoch, _ in rec["results"]]
    assert epochs.count(1) == epochs.count(2) == spec.num_samples
    assert (rec["grace_period"], rec["reduction_factor"], rec["search"]["n_startup_trials"]) == (2, 3, 3)


@pytest.mark.parametrize("settings, default", [
    ("grace_period: 2\nreduction_factor: 3\n", "optuna-asha-pruned-liar"),
    ("grace_period: 2\nreduction_factor: 3\nsearch: {sampler: random}\n", "random-asha"),
    ("grace_period: 1\nreduction_factor: 4\nsearch: {sampler: random}\n", "random-asha-g1-rf4"),
    ("grace_period: 1\nreduction_factor: 4\nsearch: {n_startup_trials: 5}\n", "optuna-asha-pruned-liar-g1-rf4-ns5"),
    ("grace_period: 2\nreduction_factor: 3\nsearch: {n_startup_trials: 5, multivariate: true}\n",
     "optuna-asha-pruned-liar-ns5-mv"),
])
def test_the_default_is_the_strategy_with_the_space_files_settings(tmp_path, settings, default):
    """The space file's sampler, rungs and TPE settings name the strategy the table marks as the
    default; settings no strategy runs are an error, not a silently wrong default."""
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.replace("grace_period: 1\nreduction_factor: 2\n", settings))
    assert default_strategy(path) == default
    path.write_text(SPACE)  # grace 1, rf 2: no strategy's
    with pytest.raises(SystemExit, match="no strategy in bench/replay.py runs"):
        default_strategy(path)


@pytest.mark.parametrize("task, default", [("fcn", "random-asha-g4-rf4"),
                                           ("emotion", "optuna-asha-pruned-liar-g1-rf4-ns5")])
def test_a_space_files_new_rungs_leave_the_recorded_strategies_as_they_ran(task, default):
    """The space files' ASHA is grace 4, rf 4 for fcn (its shifted nets trail until epoch 4) and
    grace 1, rf 4 with TPE's 5 start-up trials for emotion: the campaign's other strategies keep
    replaying grace 2, rf 3 and TPE's 10 start-up trials (their recorded runs'), and the table
    marks the variant default."""
    setup = make_setup(task, None, None)
    assert (setup.spec.grace_period, setup.spec.reduction_factor, setup.spec.search) == (2, 3, {})
    assert setup.default == default


def test_the_replay_space_is_the_tables_grid(tiny):
    """Searched: the grid's parameters; the rest held where the table held them (``fixed``, else
    the course config's value), so the searcher's space has no dimension the table cannot tell."""
    table, spec = tiny
    assert spec.max_epochs == EPOCHS and spec.grace_period == 1
    assert spec.searched() == ["activation", "batch_size"]
    assert spec.constants() == {"hidden_size": 32, "lr": 0.05}
    assert spec.initial == [{"activation": "relu", "batch_size": 64}]


def test_a_diverged_point_errors_where_its_training_did(tmp_path):
    """A recorded point whose loss went non-finite in epoch 2 replays epoch 1, then errors (no
    report of the diverged epoch's chance accuracy, nor of the NaN epochs after it)."""
    grid = {"lr": [0.01, 0.3]}
    rows = [{"point": p, "epoch": e, "lr": grid["lr"][p], "val_acc": 0.5 if p and e == 2 else 0.2 * e,
             "epoch_s": 1.0 if not (p and e == 3) else 0.0, "diverged": bool(p and e >= 2)}
            for p in (0, 1) for e in (1, 2, 3)]
    rows[-1]["val_acc"] = float("nan")
    table = read_table(write_table(tmp_path / "t.parquet", rows, {
        "task": "fcn", "metric": "val_acc", "mode": "max", "max_epochs": 3, "grid": grid}))
    assert table.diverged_at(0) is None and table.diverged_at(1) == 2
    assert table.curve(0) == ([0.2, 0.4, 0.6000000000000001], [1.0, 1.0, 1.0])
    assert table.curve(1) == ([0.2], [1.0])
    replay_divergence(table, 0, scale=0.0)  # a point that trained to the end: nothing to raise
    with pytest.raises(ReplayDiverged, match="point 1: training loss not finite in epoch 2"):
        replay_divergence(table, 1, scale=0.0)


def test_the_work_clock_counts_recorded_epoch_seconds_over_two_slots(tiny):
    """Tune's clock is wall / scale (overhead included); the work clock sums the recorded seconds
    of the epochs reported so far over the two slots. The budget cuts on Tune's clock."""
    table, _ = tiny
    # (point, epoch): (0, 1) 1.5 s, (1, 1) 2.5 s, (0, 2) 2.0 s, (1, 2) 3.0 s; (1, 2) first reaches 0.12
    rows = [[0.01, 0.011, 1, 0], [0.02, 0.111, 1, 1], [0.03, 0.021, 2, 0], [0.04, 0.121, 2, 1]]
    run = {"results": rows, "scale": 0.001, "budget_s": 100.0, "mode": "max", "seed": 0, "wall_s": 1.0}
    assert time_to_target(run, 0.12, "max") == pytest.approx(40.0)
    assert time_to_target(run, 0.12, "max", table) == pytest.approx((1.5 + 2.5 + 2.0 + 3.0) / 2)
    assert time_to_target(run, 0.11, "max", table) == pytest.approx((1.5 + 2.5) / 2)
    assert time_to_target({**run, "budget_s": 35.0}, 0.12, "max", table) is None
    faster = {**run, "seed": 0, "strategy": "b", "results": [[0.005, 0.121, 2, 1]]}
    summary = summarize([{**run, "strategy": "a"}, faster], 0.12, "max", "a", table)
    assert summary["a"]["work_time_to_target_q"][1] == pytest.approx(4.5)
    assert summary["b"]["work_time_to_target_q"][1] == pytest.approx(1.5)
    assert summary["b"]["time_to_target_q"][1] == pytest.approx(5.0)


def test_the_overhead_replay_is_constant_and_never_cut(tiny):
    """Every epoch the table's mean seconds, no point diverging (a trial ending early would make
    the run shorter than its ideal) and a budget three times the ideal; Optuna's plain loop runs
    every trial to the end and reports what the table holds."""
    tiny_table, spec = tiny
    frame = tiny_table.frame.assign(diverged=(tiny_table.frame["point"] == 3) & (tiny_table.frame["epoch"] == 3))
    table = Table(tiny_table.meta, frame)
    const, ideal = overhead_setup(Setup(table, spec, scale=0.002, table_id="tiny"))
    mean_s = table.frame["epoch_s"].mean()
    assert set(const.table.frame["epoch_s"]) == {mean_s}
    assert table.diverged_at(3) == 3 and all(const.table.diverged_at(p) is None for p in range(4))
    assert const.spec.num_samples == 4 and ideal == pytest.approx(2 * EPOCHS * mean_s)
    assert const.budget_s == pytest.approx(3 * ideal)
    rows, _ = in_process_run(const, seed=0, plain=True)
    assert len(rows) == 4 * EPOCHS
    recorded = {(r.point, r.epoch): r.val_acc for r in table.frame.itertuples()}
    assert all(v == recorded[p, e] for _, v, e, p in rows)


def test_a_held_out_summary_reads_only_the_later_seeds(tiny, tmp_path, monkeypatch):
    """``--summary --held-out N``: the strategies compared on seeds N and up only (seeds that
    played no part in choosing the default), in files of their own beside the full summary."""
    import json

    from bench import replay_report

    monkeypatch.setattr(replay_report, "RESULTS", tmp_path)
    table, spec = tiny
    setup = Setup(table, spec, scale=0.001, table_id="tiny", default="a")
    # seed 0: "b" reaches 0.12 first; seeds 1 and 2: "a" does
    rows = {"early": [[0.005, 0.121, 2, 1]], "late": [[0.04, 0.121, 2, 1]]}
    runs = [{**setup.key(), "strategy": name, "seed": seed, "mode": "max", "wall_s": 1.0,
             "results": rows["early" if (name == "b") == (seed == 0) else "late"]}
            for seed in range(3) for name in ("a", "b")]
    path = replay_report.write(setup, runs, 0.12, 0.95, {"a": "", "b": ""}, held_out=1)
    assert path.name == "fcn.held-out-1.md" and not (tmp_path / "fcn.json").exists()
    rec = json.loads((tmp_path / "fcn.held-out-1.json").read_text())
    assert rec["held_out_from_seed"] == 1
    assert {n: s["seeds"] for n, s in rec["strategies"].items()} == {"a": 2, "b": 2}
    assert rec["strategies"]["a"]["time_to_target_q"][1] < rec["strategies"]["b"]["time_to_target_q"][1]


def test_a_table_of_its_own_has_summary_and_runs_files_of_its_own(tiny, tmp_path, monkeypatch):
    """``--table bench/tables/fcn_shifts.parquet``: its runs and summary are named after the table,
    so they do not overwrite those of the task's default table (``fcn.*``)."""
    import json

    from bench import replay, replay_report

    monkeypatch.setattr(replay_report, "RESULTS", tmp_path)
    monkeypatch.setattr(replay, "RESULTS", tmp_path)
    setup = make_setup("fcn", tmp_path / "tiny.parquet", scale=0.001)
    assert setup.name == "tiny"
    run = {**setup.key(), "strategy": setup.default, "seed": 0, "mode": "max", "wall_s": 1.0,
           "results": [[0.005, 0.121, 2, 1]]}
    replay.runs_file(setup.name).write_text(json.dumps(run) + "\n")
    path = replay_report.write(setup, replay.read_runs(setup.name), 0.12, 0.95, {setup.default: ""})
    assert path.name == "tiny.md" and (tmp_path / "tiny.json").exists()
    assert not list(tmp_path.glob("fcn.*"))


def test_a_budget_of_ones_own_runs_under_it_in_files_named_for_it(tiny, tmp_path):
    """``--budget S`` (e.g. the space's budget scaled to the table's share of the data): the runs
    are cut at S simulated seconds, and neither their runs nor their summary mix with the rule's."""
    rule = make_setup("fcn", tmp_path / "tiny.parquet", scale=0.001)
    setup = make_setup("fcn", tmp_path / "tiny.parquet", scale=0.001, budget_s=5.5)
    assert setup.budget_s == 5.5 != rule.budget_s and setup.key()["budget_s"] == 5.5
    assert setup.name == "tiny.budget-5.5" and rule.name == "tiny"
