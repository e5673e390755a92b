"""The experiment folder: what a sweep writes into it, and reading and writing its files.

The literal lists below are what a small FCN sweep with ``--seeds 2`` wrote before the folder got
its own module (issue 14): ``final.json``'s keys, ``results.parquet``'s columns and the report's
figures and headings. A refactoring that drops or renames any of them fails here. (Since issue 24
the sweep runs the shipped fcn space, shrunk: its course point adds ``course``, its parameters the
``config/`` columns, and 6 trials draw no importance figure.)
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from finished_sweep import write_space as write_fcn_space
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.experiment import (experiment_dir, load_experiment, read_results, read_space, resolve_storage,
                                 write_results, write_space)
from dlb_tune.storage import read_json, to_jsonable, write_json
from dlb_tune.space import load_space

runner = CliRunner()

FINAL_KEYS = [
    "best", "best.checkpoint", "best.config", "best.epoch", "best.trial_id", "best.val_acc", "command_s", "course",
    "course.config", "course.epoch", "course.epochs", "course.status", "course.trial_id", "course.val_acc", "errors",
    "experiment_dir", "max_epochs", "metric", "mode", "name", "num_samples", "optuna_states", "sampler", "scheduler",
    "seed", "seeds",
    "seeds.max_epochs", "seeds.metric", "seeds.mode", "seeds.ranking", "seeds.runs", "seeds.seeds", "target",
    "target_met", "task", "test", "test.test_acc", "test.test_loss", "test_metric", "timings", "timings.data_s",
    "timings.ray_start_s", "timings.test_s", "timings.trials_s", "trials", "trials.completed",
    "trials.cut_by_budget", "trials.errored", "trials.incomplete", "trials.stopped_early", "trials.total", "wall_s",
]
RESULTS_COLUMNS = [
    "trial_id", "config/activation", "config/hidden_size", "config/num_layers", "config/lr", "config/momentum",
    "config/weight_decay", "config/batch_size", "config/shift", "config/lr_schedule",
    "status", "epochs", "error", "train_loss", "train_acc", "train_lr", "val_loss", "val_acc", "params", "epoch",
    "epoch_s", "best_val_acc", "ended_at", "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "pid",
    "time_since_restore", "iterations_since_restore", "best_epoch", "node_id", "wall_s", "path",
]
OUR_FILES = ["final.json", "live.json", "results.parquet", "seeds.json", "space.yaml", "sweep.json"]
REPORT_FIGURES = ["report/metric_vs_epoch.png", "report/best_so_far.png", "report/parallel_coordinates.png"]
REPORT_HEADINGS = [
    "# Sweep `s`: task `fcn`",
    "## Best configuration",
    "## Initial point (the space's first `initial:`)",
    "## Top configurations re-run with 2 seeds",
    "## val_acc per epoch (dashed, ending in x: stopped early by ASHA; grey verticals: ASHA rungs)",
    "## Best so far against wall time",
    "## Parameters against the metric",
    "## Parameter importance (fANOVA)",
    "## Trials",
]


def nested_keys(d: dict, prefix: str = "") -> list[str]:
    """Keys and dotted sub-keys; a trial's config is the space's, so its keys are not the file's."""
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, dict) and k != "config":
            out += nested_keys(v, f"{prefix}{k}.")
    return sorted(out)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, data_dir, ray_local):
    """The small FCN sweep of the report tests, with ``--seeds 2``, then ``dlb-tune report``."""
    root = tmp_path_factory.mktemp("seeded")
    space = write_fcn_space(root / "space.yaml")
    sweep = runner.invoke(app, ["sweep", "fcn", "--data-dir", str(data_dir), "--space", str(space),
                                "--storage", str(root / "runs"), "--name", "s", "--limit", "1000",
                                "--cpus-per-trial", "2", "--seed", "3", "--seeds", "2"])
    assert sweep.exit_code == 0, sweep.output
    report = runner.invoke(app, ["report", "s", "--storage", str(root / "runs")])
    assert report.exit_code == 0, report.output
    return root / "runs" / "s", sweep.output, report.output


def test_final_json_keeps_its_keys_and_the_seed_ranking(seeded):
    exp, output, _ = seeded
    final = json.loads((exp / "final.json").read_text())
    assert nested_keys(final) == FINAL_KEYS
    # --seeds runs after the sweep, on its data, and its ranking joins final.json
    assert final["seeds"] == json.loads((exp / "seeds.json").read_text())
    assert len(final["seeds"]["ranking"]) == 3 and final["seeds"]["seeds"] == 2
    assert output.index("results: ") < output.index("re-running the top 3 config(s) of s with 2 seeds")


def test_results_parquet_keeps_its_columns(seeded):
    exp, _, _ = seeded
    assert list(pd.read_parquet(exp / "results.parquet").columns) == RESULTS_COLUMNS
    assert sorted(p.name for p in exp.iterdir() if p.suffix in (".json", ".parquet", ".yaml")
                  and not p.name.startswith(("experiment_state", "search_gen_state"))) == OUR_FILES


def test_report_keeps_its_figures_and_headings(seeded):
    exp, _, output = seeded
    assert [line.strip() for line in output.splitlines() if line.strip().startswith("report/")] == REPORT_FIGURES
    headings = [line for line in (exp / "report.md").read_text().splitlines() if line.startswith("#")]
    assert headings == REPORT_HEADINGS


def test_loaded_experiment_reads_back_what_the_sweep_wrote(seeded):
    exp_dir, _, _ = seeded
    exp = load_experiment("s", str(exp_dir.parent))
    assert exp.path == exp_dir and exp.name == "s"
    assert exp.trials.equals(read_results(str(exp_dir))[0])
    assert exp.sweep["seeds"] == 2 and exp.seeds()["seeds"] == 2 and exp.plan() is None
    best = exp.final["best"]["trial_id"]
    assert set(exp.history()["trial_id"]) == set(exp.trials["trial_id"])
    assert exp.checkpoint(best).startswith(str(exp_dir / f"trial_{best}" / "checkpoint_"))
    assert exp.seed_runs_dir() == exp_dir.parent / "s-seeds"


# --- files, without a sweep -------------------------------------------------------------------


@dataclasses.dataclass
class _Point:
    x: float
    tags: tuple


def test_to_jsonable_makes_numpy_and_non_finite_values_plain():
    out = to_jsonable({"a": np.float32(0.5), "b": [np.int64(3), np.bool_(True)], 4: float("nan"),
                       "c": np.float64("inf"), "d": _Point(np.float64(1.5), ("u", np.int32(2))), "e": "text"})
    assert out == {"a": 0.5, "b": [3, True], "4": None, "c": None, "d": {"x": 1.5, "tags": ["u", 2]}, "e": "text"}
    assert type(out["b"][0]) is int and type(out["a"]) is float
    json.dumps(out, allow_nan=False)  # valid JSON, no NaN literal


def test_files_round_trip_through_one_layer(tmp_path):
    exp_dir = str(tmp_path / "runs" / "x")  # not there yet: writing makes the folders
    write_json(f"{exp_dir}/a.json", {"v": np.float64(2.0)})
    assert read_json(f"{exp_dir}/a.json") == {"v": 2.0}
    assert read_json(f"{exp_dir}/missing.json") is None
    df = pd.DataFrame({"trial_id": ["t1", "t2"], "error": pd.array([None, "boom"], dtype="string")})
    write_results(exp_dir, df)
    back, final = read_results(exp_dir)
    assert back.equals(df) and final is None
    spec = load_space(write_fcn_space(tmp_path / "space.yaml"))
    write_space(exp_dir, spec)
    assert read_space(exp_dir).params == spec.params


def test_experiment_dir_from_storage_name_or_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLB_TUNE_RESULTS", raising=False)
    assert experiment_dir("n", None) == str(tmp_path / "dlb-tune-runs" / "n")
    monkeypatch.setenv("DLB_TUNE_RESULTS", "s3://bucket/runs/")
    assert experiment_dir("n", None) == "s3://bucket/runs/n"
    assert experiment_dir("n", "rel") == str(tmp_path / "rel" / "n")
    assert resolve_storage("gs://b") == "gs://b"
