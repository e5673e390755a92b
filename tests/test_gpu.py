"""On a CUDA machine: device selection, packing fractional trials on one GPU, a data-parallel trial.

Marked ``gpu``: without CUDA these are deselected (tests/conftest.py), so a CPU-only CI run neither
runs nor skips them; ``bench/gpu_check.sh`` runs them where CUDA is. No task uses AMP (autocast),
so there is no AMP test. The sweeps run as ``dlb-tune`` subprocesses: each starts its own Ray with
the machine's GPUs (the session's local Ray has none).
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from dlb_tune.tasks.fcn import FCN, FCNConfig
from dlb_tune.testing import result_rows
from dlb_tune.trainable import pick_device, start_trial

pytestmark = pytest.mark.gpu
CONFIG = {"hidden_size": 64, "batch_size": 128}
# big enough that 4 trials overlap by whole seconds (Tune's timestamps are in seconds)
FCN_SWEEP = ["--limit", "20000", "--set", "hidden_size=512", "--set", "batch_size=64", "--sampler", "random",
             "--scheduler", "fifo", "--max-epochs", "3"]


def dlb_tune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlb_tune.cli", *args], capture_output=True, text=True, timeout=600)


def test_a_trial_with_a_gpu_trains_on_cuda(data_dir):
    device = pick_device(True)
    assert device.type == "cuda" and pick_device(False).type == "cpu"
    data = FCN.load_data(data_dir, FCNConfig(**CONFIG), limit=2000)
    task, ctx, _ = start_trial("fcn", CONFIG, data, seed=0, max_epochs=1, threads=1, device=device)
    train = task.train_epoch(0)
    assert torch.cuda.max_memory_allocated(device) > 0 and train["loss"] == train["loss"]  # finite, not NaN
    assert all(t.device.type == "cuda" for layer in task.params for t in layer)


def test_four_quarter_gpu_trials_share_one_gpu(data_dir, tmp_path):
    proc = dlb_tune("sweep", "fcn", "--data-dir", str(data_dir), *FCN_SWEEP, "--num-samples", "4",
                    "--gpus", "1", "--gpus-per-trial", "0.25", "--storage", str(tmp_path), "--name", "pack")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 trial(s) at a time" in proc.stdout and "0.25 GPU each" in proc.stdout
    rows = result_rows(tmp_path / "pack")
    spans = [(min(r["timestamp"] for r in rs), max(r["timestamp"] for r in rs)) for rs in rows.values()]
    assert len(spans) == 4 and max(s for s, _ in spans) <= min(e for _, e in spans), "the 4 trials overlapped"
    assert all(r.get("gpu_mem_mib", 0) > 0 for rs in rows.values() for r in rs), "each trial on CUDA"


def test_a_data_parallel_trial_uses_every_gpu(data_dir, tmp_path):
    gpus = torch.cuda.device_count()
    proc = dlb_tune("sweep", "fcn", "--data-dir", str(data_dir), *FCN_SWEEP, "--num-samples", "1",
                    "--gpus", str(gpus), "--gpus-per-trial", "1", "--workers-per-trial", str(gpus),
                    "--ray-train", "--storage", str(tmp_path), "--name", "ddp")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    df = pd.read_parquet(tmp_path / "ddp" / "results.parquet")
    assert df.loc[0, "status"] == "completed" and df.loc[0, "epochs"] == 3
