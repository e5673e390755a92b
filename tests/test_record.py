"""``python -m bench record``: the table it writes is complete, holds what a trial of the same
config and seed reports epoch by epoch, and never looks at the test split."""

from __future__ import annotations

import math

import pytest
import torch

from bench import record
from bench.tables import read_table
from dlb_tune.tasks import get_task
from dlb_tune.trainable import epoch_loop, start_trial, trial_seed

TASK = "emotion"  # its data loads in under a second (MNIST takes seconds)
GRID = {"params": {"lr": 2}, "fixed": {"cell": "gru", "hidden_size": 16, "batch_size": 256}, "limit": 300, "epochs": 2}


@pytest.fixture
def spied_splits(monkeypatch) -> list[str]:
    """Every split the task evaluates, in order."""
    task_cls, seen = get_task(TASK), []
    evaluate = task_cls.evaluate

    def spy(self, split):
        seen.append(split)
        return evaluate(self, split)

    monkeypatch.setattr(task_cls, "evaluate", spy)
    return seen


def trial_curve(config: dict, data, seed: int, epochs: int) -> list[dict[str, float]]:
    """The per-epoch metrics the sweep's own trial loop reports for ``config``."""
    task, ctx, _ = start_trial(TASK, config, data, seed=seed, max_epochs=epochs, threads=1,
                               device=torch.device("cpu"))
    reports: list[dict[str, float]] = []
    epoch_loop(task, ctx, metric="val_acc", mode="max", start_state=None,
               report=lambda metrics, _: reports.append(metrics), is_reporter=False)
    return reports


def test_record_writes_what_a_trial_reports_and_never_tests(tmp_path, data_dir, monkeypatch, spied_splits):
    monkeypatch.setitem(record.GRIDS[TASK], "test", GRID)
    out = tmp_path / "table.parquet"
    record.record(TASK, "test", limit=None, epochs=None, jobs=1, out=out, data_dir=str(data_dir),
                  echo=lambda line: None)
    assert "test" not in spied_splits and spied_splits.count("val") == 4
    assert not out.with_name(out.name + ".partial.jsonl").exists()

    table = read_table(out)
    assert table.meta["grid"] == {"lr": [0.0005, 0.01]} and table.meta["log"] == ["lr"]
    assert table.meta["fixed"]["hidden_size"] == 16 and table.meta["limit"] == 300
    assert table.meta["clock"] == "thread_cpu" and table.meta["max_epochs"] == 2
    assert table.meta["cpu_s"] == pytest.approx(table.frame["epoch_s"].sum())
    data = record.load(TASK, str(data_dir), 300)
    assert table.meta["data_sizes"] == {"train": 300, "val": len(data["val"]["y"])}

    for point, config in enumerate(table.points):
        values, seconds = table.curve(point)
        assert len(values) == 2 and all(s > 0 for s in seconds)
        direct = trial_curve({**table.meta["fixed"], **config}, data, trial_seed(0, f"point-{point}"), 2)
        assert values == [m["val_acc"] for m in direct]
        rows = table.frame[table.frame["point"] == point]
        assert list(rows["val_loss"]) == [m["val_loss"] for m in direct]
        assert list(rows["val_macro_f1"]) == [m["val_macro_f1"] for m in direct]
    assert all(math.isfinite(v) for v in table.frame["val_acc"])


def test_a_restart_skips_recorded_points(tmp_path, data_dir, monkeypatch):
    monkeypatch.setitem(record.GRIDS[TASK], "test", GRID)
    out = tmp_path / "table.parquet"
    partial = out.with_name(out.name + ".partial.jsonl")
    trained: list[int] = []
    train_point = record.train_point

    def counting(task, index, *args):
        trained.append(index)
        if index == 1 and len(trained) == 2:
            raise KeyboardInterrupt  # killed while training point 1
        return train_point(task, index, *args)

    monkeypatch.setattr(record, "train_point", counting)
    run = lambda: record.record(TASK, "test", limit=None, epochs=None, jobs=1, out=out,  # noqa: E731
                                data_dir=str(data_dir), echo=lambda line: None)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert partial.exists() and not out.exists()
    with partial.open("a") as f:
        f.write('[{"point": 1, "epo')  # a line torn by the kill
    run()
    assert trained == [0, 1, 1]
    assert len(read_table(out).frame) == 4


def test_other_settings_refuse_the_partial_file(tmp_path, data_dir, monkeypatch):
    monkeypatch.setitem(record.GRIDS[TASK], "test", GRID)
    out = tmp_path / "table.parquet"
    out.with_name(out.name + ".partial.jsonl").write_text('{"task": "fcn", "epochs": 5}\n')
    with pytest.raises(record.RecordError, match="other settings"):
        record.record(TASK, "test", limit=None, epochs=None, jobs=1, out=out, data_dir=str(data_dir),
                      echo=lambda line: None)


def test_a_diverged_point_is_recorded_as_a_trial_would_end(tmp_path, data_dir, monkeypatch):
    """Non-finite training loss at epoch 2 of point 1: training stops there, the remaining epochs
    are NaN rows marked diverged with no seconds, and the table is still complete."""
    monkeypatch.setitem(record.GRIDS[TASK], "test", GRID)
    task_cls = get_task(TASK)
    train_epoch, epochs_trained = task_cls.train_epoch, []

    def failing(self, epoch):
        epochs_trained.append(epoch)
        metrics = train_epoch(self, epoch)
        return {**metrics, "loss": math.nan} if len(epochs_trained) == 5 else metrics

    monkeypatch.setattr(task_cls, "train_epoch", failing)
    out = tmp_path / "table.parquet"
    record.record(TASK, "test", limit=None, epochs=3, jobs=1, out=out, data_dir=str(data_dir), echo=lambda line: None)
    assert epochs_trained == [0, 1, 2, 0, 1]
    table = read_table(out)
    rows = table.frame[table.frame["point"] == 1]
    assert list(rows["diverged"]) == [False, True, True] and list(rows["epoch_s"] > 0) == [True, True, False]
    assert math.isfinite(rows["val_acc"].iloc[1]) and math.isnan(rows["val_acc"].iloc[2])
    assert table.meta["diverged_points"] == 1 and not table.frame[table.frame["point"] == 0]["diverged"].any()
