"""``start_trial``: the one way every trial (Tune, Ray Train worker, --seeds run, plan) builds its task."""

from __future__ import annotations

import torch
from ray.train import Checkpoint

from dlb_tune.plan import CalibrationContext
from dlb_tune.tasks.fcn import FCN, FCNConfig
from dlb_tune.trainable import save_state, start_trial

CONFIG = {"hidden_size": 16, "batch_size": 50}


def _weights(state: dict) -> list[torch.Tensor]:
    """The FCN's (W, b) of every layer, flat."""
    return [t.clone() for layer in state["params"] for t in layer]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


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
