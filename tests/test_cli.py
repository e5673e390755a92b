"""The command line, end to end: a real sweep on real MNIST, and bad input handled cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from dlb_tune.cli import app
from finished_sweep import NAME, finished_sweep

runner = CliRunner()


@pytest.fixture(scope="module")
def fcn_sweep(tmp_path_factory, data_dir, ray_local):
    """The session's finished sweep (tests/finished_sweep.py): the shipped fcn space, 6 trials x up
    to 3 epochs on MNIST, one at a time, so ASHA's stops follow the seeded proposal order."""
    return finished_sweep(tmp_path_factory, data_dir)


def test_sweep_writes_results_and_final(fcn_sweep):
    exp, output = fcn_sweep.exp, fcn_sweep.sweep_output
    df = pd.read_parquet(exp / "results.parquet")
    assert len(df) == 6
    assert {"trial_id", "status", "epochs", "config/lr", "val_acc", "best_val_acc", "train_loss",
            "epoch_s"} <= set(df.columns)
    assert (df["status"] == "stopped_early").sum() >= 1, df[["trial_id", "status", "epochs"]]
    assert (df.loc[df.status == "stopped_early", "epochs"] < 3).all()
    final = json.loads((exp / "final.json").read_text())
    assert final["test"]["test_acc"] > 0.8  # 3 epochs on 3,000 images
    assert final["target_met"] is (final["test"]["test_acc"] >= final["target"])
    assert final["best"]["val_acc"] == pytest.approx(df["best_val_acc"].max())
    assert final["trials"]["total"] == 6 and final["trials"]["errored"] == 0
    assert "test (evaluated once)" in output and "stopped early by ASHA" in output


def test_every_trial_keeps_a_checkpoint_and_tensorboard_events(fcn_sweep):
    trials = sorted(fcn_sweep.exp.glob("trial_*"))
    assert len(trials) == 6
    for trial in trials:
        assert list(trial.glob("checkpoint_*/state.pt")), trial
        assert list(trial.glob("events.out.tfevents.*")), trial


def test_results_command_reads_back_from_disk(fcn_sweep):
    storage = str(fcn_sweep.storage)
    table = runner.invoke(app, ["results", NAME, "--storage", storage])
    assert table.exit_code == 0 and "best_val_acc" in table.output and "test_acc" in table.output
    csv = runner.invoke(app, ["results", NAME, "--storage", storage, "--format", "csv"])
    assert csv.output.count("\n") >= 7  # header + 6 trials


def test_tasks_lists_every_task():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    assert "fcn" in result.output and "val_acc" in result.output and "fcn.yaml" in result.output
    words = " ".join(result.output.split())  # a description wraps at the terminal's width
    assert "fully connected net, hand-written forward/backward" in words  # the space's description


def _one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_unknown_task(data_dir):
    line = _one_line_error(runner.invoke(app, ["sweep", "nosuchtask", "--data-dir", str(data_dir)]))
    assert "unknown task 'nosuchtask'" in line and "fcn" in line


def test_malformed_space_file(tmp_path, data_dir):
    bad = tmp_path / "bad.yaml"  # hand-written: a malformed file, which no shipped one is
    bad.write_text("task: fcn\nmetric: val_acc\nmode: max\nparams:\n  lr: {loguniform: [0, 1]}\n")
    line = _one_line_error(runner.invoke(app, ["sweep", "fcn", "--data-dir", str(data_dir), "--space", str(bad)]))
    assert "loguniform needs low > 0" in line


def test_unknown_set_key(data_dir):
    line = _one_line_error(runner.invoke(app, ["sweep", "fcn", "--data-dir", str(data_dir), "--set", "lr_rate=0.1"]))
    assert "'lr_rate' is not a parameter" in line


def test_missing_data_names_the_files(tmp_path):
    line = _one_line_error(runner.invoke(app, ["sweep", "fcn", "--data-dir", str(tmp_path), "--smoke"]))
    assert "train-images-idx3-ubyte" in line


def test_impossible_gpu_request_fails_at_once(data_dir, tmp_path):
    """In a fresh process, so the sweep starts its own Ray and checks the machine."""
    proc = subprocess.run(
        [sys.executable, "-m", "dlb_tune.cli", "sweep", "fcn", "--data-dir", str(data_dir), "--smoke",
         "--gpus", "64", "--storage", str(tmp_path)],
        capture_output=True, text=True, timeout=600,  # a ceiling for a hang, not the test's pace
    )
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert err == [err[0]] and "GPU" in err[0] and "Traceback" not in proc.stderr
