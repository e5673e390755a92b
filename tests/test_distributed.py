"""Ray Train trials, the cluster config, and errored trials. (A lost node: the autoscaling
cluster's kill test, tests/test_autoscaling.py; resume after an interrupt: tests/test_interrupts.py,
on a driver whose every call is on record.)"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dlb_tune.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_cluster_yaml_validates_against_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(cfg)))
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    ports = [p["FromPort"] for p in cfg["provider"]["security_group"]["IpPermissions"]]
    assert ports == [22], "only SSH may be open to the outside"
    assert any("pip install" in c and "dlb-tune" in c for c in cfg["setup_commands"])
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert gpu["min_workers"] < gpu["max_workers"]


def test_cluster_yaml_typo_fails_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    cfg["available_node_types"]["gpu_worker"]["min_wokers"] = 1
    with pytest.raises(Exception, match="min_wokers"):
        validate_config(prepare_config(cfg))


def test_best_train_checkpoint_is_the_best_epoch_that_left_one(tmp_path):
    """The test split is evaluated from this folder: the best epoch by mode, among the epochs
    that left a checkpoint still on disk; None, never a wrong folder, when there is none."""
    from dlb_tune.distributed import CHECKPOINT_PATH_KEY, best_train_checkpoint

    folders = [tmp_path / f"checkpoint_{i}" for i in range(4)]
    for f in folders[:3]:
        f.mkdir()
    nan = float("nan")
    history = pd.DataFrame({"val_loss": [0.9, 0.5, 0.2, 0.7, nan], "val_acc": [0.5, nan, 0.8, 0.6, nan],
                            CHECKPOINT_PATH_KEY: [str(folders[0]), str(folders[1]), None, str(folders[2]),
                                                  str(folders[3])]})
    assert best_train_checkpoint(history, "val_loss", "min") == str(folders[1])  # epoch 2 left none
    assert best_train_checkpoint(history, "val_loss", "max") == str(folders[0])
    assert best_train_checkpoint(history, "val_acc", "max") == str(folders[2])  # a gap in another metric is no gap
    assert best_train_checkpoint(history.iloc[[4]], "val_loss", "min") is None  # metric never reported
    gone = history.assign(**{CHECKPOINT_PATH_KEY: str(folders[3])})  # deleted since (num_to_keep)
    assert best_train_checkpoint(gone, "val_loss", "min") is None
    assert best_train_checkpoint(history.drop(columns=CHECKPOINT_PATH_KEY), "val_loss", "min") is None
    assert best_train_checkpoint(history, "val_f1", "max") is None
    assert best_train_checkpoint(None, "val_loss", "min") is None


def test_workers_per_trial_reports_the_same_schema(ray_local, data_dir, storage):
    common = ["sweep", "fcn", "--data-dir", str(data_dir), "--smoke", "--num-samples", "1",
              "--storage", str(storage)]
    single = runner.invoke(app, common + ["--name", "one"])
    ddp = runner.invoke(app, common + ["--name", "ddp", "--workers-per-trial", "2"])
    assert single.exit_code == 0, single.output
    assert ddp.exit_code == 0, ddp.output
    a = pd.read_parquet(storage / "one" / "results.parquet")
    b = pd.read_parquet(storage / "ddp" / "results.parquet")
    assert set(b.columns) - {"checkpoint_path"} == set(a.columns)
    assert b.loc[0, "status"] == "completed" and b.loc[0, "epochs"] == 2
    final = json.loads((storage / "ddp" / "final.json").read_text())
    assert 0 < final["test"]["test_acc"] <= 1  # evaluated from Ray Train's checkpoint
    assert Path(final["best"]["checkpoint"]).is_dir()


def test_workers_per_trial_beyond_the_cluster_fails_clearly(ray_local, data_dir, storage):
    result = runner.invoke(app, ["sweep", "fcn", "--data-dir", str(data_dir), "--smoke",
                                 "--workers-per-trial", "3", "--storage", str(storage)])
    assert result.exit_code == 2
    assert "needs 3 CPU(s) but the sweep may use 2" in result.output


def test_a_diverging_trial_is_errored_and_the_sweep_goes_on(ray_local, data_dir, storage):
    space = storage.parent / "diverge.yaml"  # hand-written: a learning rate that diverges, which no shipped space offers
    space.write_text("task: fcn\nmetric: val_acc\nmode: max\nmax_epochs: 2\nnum_samples: 4\n"
                     "params:\n  lr: {choice: [0.05, 1.0e+6]}\n  activation: relu\n  hidden_size: 32\n")
    result = runner.invoke(app, ["sweep", "fcn", "--data-dir", str(data_dir), "--space", str(space),
                                 "--limit", "2000", "--sampler", "random", "--scheduler", "fifo",
                                 "--storage", str(storage), "--name", "nan"])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(storage / "nan" / "results.parquet")
    errored = df[df.status == "errored"]
    assert len(errored) >= 1 and (errored["config/lr"] == 1e6).all()
    assert (df.loc[df.status != "errored", "config/lr"] == 0.05).all() and (df.status == "completed").any()
    assert errored["error"].str.contains("diverged").all()
    assert "errored" in result.output and "diverged" in result.output
    final = json.loads((storage / "nan" / "final.json").read_text())
    assert final["best"]["config"]["lr"] == 0.05 and len(final["errors"]) == len(errored)
