"""The replay benchmark (bench/replay.py): a replayed sweep reports exactly what the table holds.

A tiny hand-made table (4 grid points x 3 epochs) replayed through the real Tune stack at a small
scale. What Optuna is told about stopped trials and that ``initial:`` configs run first are
tested on real sweeps in tests/test_search.py.
"""

from __future__ import annotations

import pytest

from bench.replay import BY_NAME, Setup, replay_spec, tune_run
from bench.tables import ReplayDiverged, grid_points, read_table, replay_divergence, write_table

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
