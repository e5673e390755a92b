"""Data-parallel training equals single-process training on the same data.

Two ranks in two local processes (gloo, as Ray Train runs them on CPUs) each train on their
shard of every step's examples; one process trains on whole steps (twice the batch size).
After the same epoch the weights and losses must agree to float32 round-off (TOLERANCE).
Checked for the hand-written FCN (gradients averaged by ``TrialContext.all_reduce_mean``) and
for a torch.nn model through ``TrialContext.wrap_model`` (DistributedDataParallel).

Why two batch sizes: ``TrialContext.batches`` gives rank r every second batch of one shared
permutation, so step k of the two ranks covers exactly the examples of step k of a single
process with batches twice as large. Mean gradients of equal halves average to the whole's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from dlb_tune.tasks import TrialContext
from dlb_tune.tasks.fcn import FCN, FCNConfig, load_mnist

TOLERANCE = 1e-5  # relative, on weights and losses after one epoch; float32 sums in another order
BATCH = 32  # per rank; the single process takes 2 x BATCH
EXAMPLES = 8 * 2 * BATCH  # 8 steps, none short
SEED = 3


class TinyNet(torch.nn.Module):
    """An MLP trained by autograd and torch.optim (momentum): what DDP is for."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.Tanh(),
                                          torch.nn.Linear(32, 10))

    def forward(self, x):
        return self.layers(x)


def train_fcn(data, ctx: TrialContext, batch_size: int) -> dict:
    task = FCN(FCNConfig(hidden_size=32, batch_size=batch_size, lr=0.1, momentum=0.9), data, ctx)
    train = task.train_epoch(0)
    weights = [t.clone() for layer in task.params for t in layer]
    return {"weights": weights, "train_loss": train["loss"], "val_loss": task.evaluate("val")["loss"]}


def train_torch_nn(data, ctx: TrialContext, batch_size: int) -> dict:
    torch.manual_seed(ctx.seed)  # the same initial weights in every process
    net = TinyNet()
    model = ctx.wrap_model(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = data["train"]["x"].float().div(255.0)
    y = data["train"]["y"]
    totals = {"loss": 0.0, "n": 0.0}
    for idx in ctx.batches(len(y), batch_size):
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals["loss"] += loss.item() * len(idx)
        totals["n"] += len(idx)
    totals = ctx.sum_across_workers(totals)
    with torch.no_grad():
        val_loss = F.cross_entropy(net(data["val"]["x"].float().div(255.0)), data["val"]["y"]).item()
    return {"weights": [p.detach().clone() for p in net.parameters()],
            "train_loss": totals["loss"] / totals["n"], "val_loss": val_loss}


TRAINERS = {"fcn": train_fcn, "torch.nn": train_torch_nn}


def _rank(rank: int, world: int, init_file: str, trainer: str, data, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = TRAINERS[trainer](data, TrialContext(max_epochs=1, seed=SEED, rank=rank, world_size=world), BATCH)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def mnist_slice(data_dir):
    data = load_mnist(data_dir, limit=EXAMPLES)
    assert len(data["train"]["y"]) == EXAMPLES
    return data


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_two_ranks_train_like_one_process(trainer, mnist_slice):
    single = TRAINERS[trainer](mnist_slice, TrialContext(max_epochs=1, seed=SEED), 2 * BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(2, f"{tmp}/init", trainer, mnist_slice, tmp), nprocs=2, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(2)]
    for out in ranks:
        for mine, ref in zip(out["weights"], single["weights"]):
            rel = ((mine - ref).abs().max() / ref.abs().max()).item()
            assert rel < TOLERANCE, f"{trainer}: weights differ from single-process by {rel:.2e} (relative)"
        for key in ("train_loss", "val_loss"):
            assert out[key] == pytest.approx(single[key], rel=TOLERANCE), key
