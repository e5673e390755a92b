"""The command line, end to end: a real sweep on real MNIST, and bad input handled cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from dlb_tune.cli import app
from finished_sweep import small_fcn_space

runner = CliRunner()

SMALL_FCN_SPACE = small_fcn_space("64")


@pytest.fixture(scope="module")
def fcn_sweep(tmp_path_factory, data_dir, ray_local):
    """One real sweep shared by the assertions below: 6 trials x up to 3 epochs on MNIST."""
    root = tmp_path_factory.mktemp("sweep")
    space = root / "space.yaml"
    space.write_text(SMALL_FCN_SPACE)
    result = runner.invoke(app, ["sweep", "fcn", "--data-dir", str(data_dir), "--space", str(space),
                                 "--storage", str(root / "runs"), "--name", "t", "--limit", "6000",
                                 "--cpus-per-trial", "2", "--seed", "1"])  # one at a time: ASHA's
    return result, root / "runs" / "t"  # stops follow the seeded proposal order, not timing


def test_sweep_writes_results_and_final(fcn_sweep):
    result, exp = fcn_sweep
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(exp / "results.parquet")
    assert len(df) == 6
    assert {"trial_id", "status", "epochs", "config/lr", "val_acc", "best_val_acc", "train_loss",
            "epoch_s"} <= set(df.columns)
    assert (df["status"] == "stopped_early").sum() >= 1, df[["trial_id", "status", "epochs"]]
    assert (df.loc[df.status == "stopped_early", "epochs"] < 3).all()
    final = json.loads((exp / "final.json").read_text())
    assert final["test"]["test_acc"] > 0.9
    assert final["target_met"] is True
    assert final["best"]["val_acc"] == pytest.approx(df["best_val_acc"].max())
    assert final["trials"]["total"] == 6 and final["trials"]["errored"] == 0
    assert "test (evaluated once)" in result.output and "stopped early by ASHA" in result.output


def test_every_trial_keeps_a_checkpoint_and_tensorboard_events(fcn_sweep):
    _, exp = fcn_sweep
    trials = sorted(exp.glob("trial_*"))
    assert len(trials) == 6
    for trial in trials:
        assert list(trial.glob("checkpoint_*/state.pt")), trial
        assert list(trial.glob("events.out.tfevents.*")), trial


def test_results_command_reads_back_from_disk(fcn_sweep):
    _, exp = fcn_sweep
    storage = str(exp.parent)
    table = runner.invoke(app, ["results", "t", "--storage", storage])
    assert table.exit_code == 0 and "best_val_acc" in table.output and "test_acc" in table.output
    csv = runner.invoke(app, ["results", "t", "--storage", storage, "--format", "csv"])
    assert csv.output.count("\n") >= 7  # header + 6 trials


def test_tasks_lists_every_task():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    assert "fcn" in result.output and "val_acc" in result.output and "fcn.yaml" in result.output


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
    bad = tmp_path / "bad.yaml"
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
