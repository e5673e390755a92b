"""``start_trial``: the one way every trial (Tune, Ray Train worker, --seeds run, plan) builds its task."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch
from ray.train import Checkpoint

from dlb_tune.plan import CalibrationContext
from dlb_tune.tasks import TrialContext, TrialError
from dlb_tune.tasks.fcn import FCN, FCNConfig
from dlb_tune.trainable import (STATE_FILE, default_threads, epoch_loop, gpu_memory, load_state, restored_state,
                                save_state, start_trial, trial_seed)

CONFIG = {"hidden_size": 16, "batch_size": 50}


def _weights(state: dict) -> list[torch.Tensor]:
    """The FCN's (W, b) of every layer, flat."""
    return [t.clone() for layer in state["params"] for t in layer]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_trial_seed_is_pinned_in_range_and_distinct_per_trial():
    # bench/tables were recorded with these seeds (trial_seed(0, "point-<i>")): a changed formula
    # would silently re-seed every point a replay or a re-recording compares with them
    assert (trial_seed(0, "point-0"), trial_seed(7, "point-0")) == (309759257, 316759278)
    seeds = [trial_seed(base, f"trial_{i:05d}") for base in (0, 1, 12_345) for i in range(300)]
    assert len(set(seeds)) == len(seeds), "two trials share a seed"
    assert all(0 <= s < 2**31 for s in seeds)  # what every RNG (numpy's legacy seed too) accepts


def test_a_trial_gets_a_thread_per_whole_cpu_it_holds_within_the_machine():
    cores = os.cpu_count()
    assert default_threads(0.5) == 1  # a fraction of a CPU still runs on one thread
    assert default_threads(2.7) == min(2, cores)
    assert default_threads(10_000) == cores


def test_a_cuda_trial_reports_its_own_peak_memory_in_mib(monkeypatch):
    """Without a GPU here: torch's counter is faked, the device is only a name (tests/test_gpu.py runs it on one)."""
    asked = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: asked.append(device) or 3 * 2**20)
    assert gpu_memory(torch.device("cpu")) == {} and asked == []
    assert gpu_memory(torch.device("cuda", 1)) == {"gpu_mem_mib": 3.0} and asked == [torch.device("cuda", 1)]


def test_start_trial_seeds_sets_threads_and_builds_the_context(data_dir):
    data = FCN.load_data(data_dir, FCNConfig(**CONFIG), limit=200)
    previous = torch.get_num_threads()
    try:
        task, ctx, state = start_trial("fcn", CONFIG, data, seed=7, max_epochs=2, threads=1,
                                       device=torch.device("cpu"))
        assert torch.get_num_threads() == 1
        assert torch.initial_seed() == 7  # torch's own RNG too: nn.Module initialisation draws from it
    finally:
        torch.set_num_threads(previous)
    assert (ctx.seed, ctx.max_epochs, state) == (7, 2, None) and type(ctx).__name__ == "TrialContext"
    again, _, _ = start_trial("fcn", CONFIG, data, seed=7, max_epochs=2, threads=previous, device=torch.device("cpu"))
    other, _, _ = start_trial("fcn", CONFIG, data, seed=8, max_epochs=2, threads=previous, device=torch.device("cpu"))
    assert _same(_weights(task.state_dict()), _weights(again.state_dict()))  # one seed, one initialisation
    assert not _same(_weights(task.state_dict()), _weights(other.state_dict()))
    _, calib, _ = start_trial("fcn", CONFIG, data, seed=0, max_epochs=1, threads=previous,
                              device=torch.device("cpu"), context=CalibrationContext, max_batches=3)
    assert isinstance(calib, CalibrationContext) and calib.max_batches == 3
    # the device given reaches the context and the task (``meta``: a device other than the default
    # CPU that every torch has)
    meta, ctx, _ = start_trial("fcn", CONFIG, data, seed=0, max_epochs=1, threads=previous, device=torch.device("meta"))
    assert ctx.device.type == "meta" and {t.device.type for t in _weights(meta.state_dict())} == {"meta"}


def test_start_trial_restores_the_state_of_a_ray_checkpoint(data_dir, tmp_path):
    data = FCN.load_data(data_dir, FCNConfig(**CONFIG), limit=200)
    threads = torch.get_num_threads()
    task, ctx, _ = start_trial("fcn", CONFIG, data, seed=1, max_epochs=3, threads=threads, device=torch.device("cpu"))
    task.train_epoch(0)
    save_state(tmp_path / "state.pt", task, 0, 0.5, ctx.generator)
    _, _, state = start_trial("fcn", CONFIG, data, seed=1, max_epochs=3, threads=threads,
                              device=torch.device("cpu"), checkpoint=Checkpoint.from_directory(str(tmp_path)))
    assert (state["epoch"], state["best"]) == (0, 0.5)
    assert _same(_weights(state["task"]), _weights(task.state_dict()))  # the trained weights, not fresh ones


# --- epoch_loop with a scripted task: best so far, improvements, checkpoints, errors ---------------

class Scripted:
    """A task whose validation values are given: what epoch_loop does with them is the test."""

    def __init__(self, values: list[float], loss: float = 0.5, report_key: str = "acc"):
        self.values, self.loss, self.key, self.epoch = values, loss, report_key, -1

    def trial_metrics(self) -> dict:
        return {"params": 7}

    def train_epoch(self, epoch: int) -> dict:
        self.epoch = epoch
        return {"loss": self.loss}

    def evaluate(self, split: str) -> dict:
        return {self.key: self.values[self.epoch]}

    def state_dict(self) -> dict:
        return {"epoch_seen": self.epoch}


def run_loop(task, mode="max", is_reporter=True, epochs=4):
    reported, improved = [], []

    def report(metrics, ckpt_dir):
        state = load_state(ckpt_dir / STATE_FILE) if ckpt_dir else None
        reported.append((dict(metrics), state))

    epoch_loop(task, TrialContext(max_epochs=epochs), metric="val_acc", mode=mode, start_state=None,
               report=report, is_reporter=is_reporter, on_improved=improved.append)
    return reported, improved


# a tie with the best is no improvement (no new figures, the earlier checkpoint stays the best)
@pytest.mark.parametrize("mode, values, best, improved", [
    ("max", [0.5, 0.7, 0.7, 0.9], [0.5, 0.7, 0.7, 0.9], [1, 2, 4]),
    ("min", [0.5, 0.5, 0.3, 0.9], [0.5, 0.5, 0.3, 0.3], [1, 3]),
])
def test_epoch_loop_tracks_the_best_by_mode_and_checkpoints_every_epoch(mode, values, best, improved):
    t0 = time.perf_counter()
    reported, calls = run_loop(Scripted(values), mode=mode)
    elapsed = time.perf_counter() - t0
    assert [m["epoch"] for m, _ in reported] == [1, 2, 3, 4]
    assert [m["best_val_acc"] for m, _ in reported] == best and calls == improved
    assert [s["epoch"] for _, s in reported] == [0, 1, 2, 3] and [s["best"] for _, s in reported] == best
    assert reported[1][1]["task"] == {"epoch_seen": 1}
    first = reported[0][0]
    assert first["val_acc"] == values[0] and first["train_loss"] == 0.5 and first["params"] == 7
    assert 0 <= first["epoch_s"] <= elapsed  # a duration, not a clock reading


def test_epoch_loop_on_a_worker_that_does_not_report_checkpoints_nothing():
    reported, calls = run_loop(Scripted([0.5, 0.7]), is_reporter=False, epochs=2)
    assert [(m["epoch"], m["best_val_acc"], state) for m, state in reported] == [(1, 0.5, None), (2, 0.7, None)]
    assert calls == []  # figures are the reporting worker's


@pytest.mark.parametrize("task, message", [
    (Scripted([0.5, math.nan]), "non-finite loss or val_acc at epoch 2: training diverged"),
    (Scripted([0.5], loss=math.inf), "non-finite loss or val_acc at epoch 1"),
    (Scripted([0.5], report_key="f1"), r"the task reported no 'val_acc'; it reports \['params', 'train_loss', 'val_f1'\]"),
])
def test_epoch_loop_ends_a_trial_that_diverges_or_misses_its_metric(task, message):
    with pytest.raises(TrialError, match=message):
        run_loop(task, epochs=2)


# --- a checkpoint from shared storage never runs code ----------------------------------------------

class Payload:
    """What a hostile ``state.pt`` holds: unpickling it calls ``open(marker, "w")``, creating the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_whose_unpickling_runs_code_is_refused_in_one_line(tmp_path):
    marker, ckpt = tmp_path / "code-ran", tmp_path / "checkpoint"
    ckpt.mkdir()
    torch.save({"task": Payload(marker), "epoch": 0, "best": 0.5}, ckpt / STATE_FILE)
    with pytest.raises(TrialError) as refused:
        restored_state(Checkpoint.from_directory(str(ckpt)))  # what start_trial resumes from
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{ckpt / STATE_FILE}: refused") and "GLOBAL" in message, message
    assert not marker.exists()
    torch.load(ckpt / STATE_FILE, weights_only=False)  # the payload is live: a full unpickle runs it
    assert marker.exists()


def test_a_checkpoint_that_is_no_pickle_at_all_is_refused_in_one_line(tmp_path):
    path = tmp_path / STATE_FILE
    path.write_bytes(b"not a checkpoint")  # torch's error names no GLOBAL to show
    with pytest.raises(TrialError) as refused:
        load_state(path)
    assert str(refused.value) == f"{path}: refused, it holds more than tensors and plain values (not a weights-only file)"
