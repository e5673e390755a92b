"""Task ``fcn``: a fully connected net on MNIST with hand-written forward and backward passes.

Only torch tensor operations: no autograd, no ``torch.nn``, no built-in loss, activation or
optimiser. Softmax cross-entropy (with label smoothing), the activations and their derivatives,
inverted dropout, random shifts of the training images and SGD with momentum are written out
below, so the gradient checks in ``tests/test_fcn.py`` test this code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlb_tune.tasks._common import LR_SCHEDULES, MNIST_DATA, load_mnist, lr_factor
from dlb_tune.tasks.base import ConfigError, Task, TrialContext, register

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # training-set pixel statistics, the usual constants
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a blank pixel, normalised


@dataclass
class FCNConfig:
    activation: str = "relu"  # sigmoid | tanh | relu
    hidden_size: int = 256  # units in each hidden layer
    num_layers: int = 1  # hidden layers, 1 to 3
    lr: float = 0.05  # SGD step size
    momentum: float = 0.9  # heavy-ball momentum; 0 is plain SGD
    weight_decay: float = 0.0  # L2 penalty added to the weight gradients
    batch_size: int = 64  # examples per SGD step
    lr_schedule: str = "cosine"  # none | cosine (decays to 0 over max_epochs) | step | onecycle, per epoch
    dropout: float = 0.0  # probability of zeroing each hidden unit while training (inverted dropout)
    label_smoothing: float = 0.0  # share of the target spread evenly over the 10 classes
    shift: int = 0  # pixels: each training image moves by up to this much along each axis
    val_size: int = 5000  # examples carved from the 60,000 training images for validation


# --- the network, as functions over a list of (W, b) --------------------------------------


def activate(z: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return z.clamp_min(0)
    if name == "tanh":
        return torch.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-z))
    raise ValueError(f"unknown activation '{name}'")


def activate_grad(z: torch.Tensor, a: torch.Tensor, name: str) -> torch.Tensor:
    """d act(z) / dz, from the pre-activation z and the activation a = act(z)."""
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "tanh":
        return 1.0 - a * a
    if name == "sigmoid":
        return a * (1.0 - a)
    raise ValueError(f"unknown activation '{name}'")


def init_params(sizes: list[int], activation: str, generator: torch.Generator, dtype=torch.float32):
    """He initialisation for ReLU, Glorot (Xavier) for tanh and sigmoid; zero biases."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        std = math.sqrt(2.0 / fan_in) if activation == "relu" else math.sqrt(2.0 / (fan_in + fan_out))
        if activation == "sigmoid":
            std *= 4.0  # sigmoid's slope at 0 is 1/4 (Glorot & Bengio 2010)
        w = torch.randn(fan_in, fan_out, generator=generator, dtype=dtype) * std
        params.append([w, torch.zeros(fan_out, dtype=dtype)])
    return params


def forward(params, x: torch.Tensor, activation: str, dropout: float = 0.0,
            generator: torch.Generator | None = None):
    """x: [B, 784] -> logits [B, 10], plus what backward needs: every layer's (input, z, a, mask).

    With ``dropout`` > 0 each hidden unit is zeroed with that probability and the survivors are
    scaled by 1 / (1 - dropout), so evaluation (dropout 0) needs no rescaling; mask is None
    without dropout and for the output layer."""
    cache = []
    a = x
    for i, (w, b) in enumerate(params):
        z = a @ w + b  # [B, out]
        last = i == len(params) - 1
        out = z if last else activate(z, activation)
        mask = None
        if dropout > 0 and not last:
            keep = torch.rand(out.shape, generator=generator).to(out.device) >= dropout
            mask = keep.to(out.dtype) / (1.0 - dropout)
            out = out * mask
        cache.append((a, z, out, mask))
        a = out
    return a, cache


def softmax_cross_entropy(logits: torch.Tensor, y: torch.Tensor,
                          smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and its gradient w.r.t. the logits, with the log-sum-exp shift.

    The target is (1 - smoothing) on the true class plus smoothing / K on every class, so the
    gradient is softmax - target."""
    shifted = logits - logits.max(dim=1, keepdim=True).values  # [B, 10], avoids exp overflow
    log_norm = torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))  # [B, 1]
    log_probs = shifted - log_norm
    rows = torch.arange(len(y), device=y.device)
    target = torch.full_like(log_probs, smoothing / logits.shape[1])
    target[rows, y] += 1.0 - smoothing
    loss = -(target * log_probs).sum(dim=1).mean()
    grad = torch.exp(log_probs) - target  # softmax - target
    return loss, grad / len(y)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, background: float) -> torch.Tensor:
    """Each 28x28 image of x [B, 784] moved by its own (dy, dx), each in [-max_shift, max_shift];
    pixels moved in from outside take ``background`` (a blank pixel after normalisation)."""
    n, side = len(x), 28
    padded = torch.full((n, side + 2 * max_shift, side + 2 * max_shift), background, dtype=x.dtype, device=x.device)
    padded[:, max_shift : max_shift + side, max_shift : max_shift + side] = x.view(n, side, side)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)).to(x.device)
    grid = torch.arange(side, device=x.device)
    rows = (dy[:, None] + grid)[:, :, None]  # [B, 28, 1]
    cols = (dx[:, None] + grid)[:, None, :]  # [B, 1, 28]
    return padded[torch.arange(n, device=x.device)[:, None, None], rows, cols].reshape(n, -1)


def backward(params, cache, dlogits: torch.Tensor, activation: str):
    """Gradients [(dW, db), ...] from dLoss/dlogits, layer by layer back to the input."""
    grads = [None] * len(params)
    dz = dlogits
    for i in range(len(params) - 1, -1, -1):
        a_in = cache[i][0]
        w = params[i][0]
        grads[i] = [a_in.T @ dz, dz.sum(dim=0)]
        if i > 0:
            _, z_prev, a_prev, mask = cache[i - 1]
            da = dz @ w.T
            if mask is not None:  # a_prev = act(z) * mask: the mask scales both value and gradient
                da = da * mask
                a_prev = activate(z_prev, activation)
            dz = da * activate_grad(z_prev, a_prev, activation)
    return grads


# --- the task -----------------------------------------------------------------------------------


@register
class FCN(Task):
    name = "fcn"
    Config = FCNConfig
    data_fields = ("val_size",)
    data_sets = (MNIST_DATA,)
    smoke = {"hidden_size": 32, "batch_size": 128}
    allowed_values = {"activation": ("relu", "tanh", "sigmoid"), "lr_schedule": LR_SCHEDULES}

    @classmethod
    def validate(cls, name: str, value: Any) -> None:
        super().validate(name, value)
        if name in ("dropout", "label_smoothing") and not 0.0 <= value < 1.0:
            raise ConfigError(f"{value!r} is outside [0, 1)")
        if name == "shift" and not 0 <= value <= 13:
            raise ConfigError(f"{value!r} pixels is outside 0..13 (images are 28 pixels wide)")

    @classmethod
    def load_data(cls, data_dir: Path, config: FCNConfig, limit: int | None = None) -> dict[str, Any]:
        return load_mnist(data_dir, config.val_size, limit)

    def __init__(self, config: FCNConfig, data: dict[str, Any], ctx: TrialContext) -> None:
        super().__init__(config, data, ctx)
        self.splits = {k: self._prepare(v) for k, v in data.items()}
        sizes = [784] + [config.hidden_size] * config.num_layers + [10]
        self.params = [[t.to(ctx.device) for t in layer] for layer in init_params(sizes, config.activation, ctx.generator)]
        self.velocity = [[torch.zeros_like(t) for t in layer] for layer in self.params]
        self.steps = 0

    def _prepare(self, split: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = split["x"].reshape(len(split["x"]), -1).float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
        return x.to(self.ctx.device), split["y"].to(self.ctx.device)

    def _lr(self, epoch: int) -> float:
        return self.config.lr * lr_factor(self.config.lr_schedule, epoch / self.ctx.max_epochs)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, (x, y) = self.config, self.splits["train"]
        lr = self._lr(epoch)
        totals = {"loss": 0.0, "correct": 0.0, "n": 0.0}
        for idx in self.ctx.batches(len(y), cfg.batch_size):
            xb, yb = x[idx], y[idx]
            if cfg.shift:
                xb = random_shift(xb, cfg.shift, self.ctx.generator, BACKGROUND)
            logits, cache = forward(self.params, xb, cfg.activation, cfg.dropout, self.ctx.generator)
            loss, dlogits = softmax_cross_entropy(logits, yb, cfg.label_smoothing)
            grads = backward(self.params, cache, dlogits, cfg.activation)
            self.ctx.all_reduce_mean([g for layer in grads for g in layer])
            self._sgd_step(grads, lr)
            totals["loss"] += loss.item() * len(yb)
            totals["correct"] += (logits.argmax(1) == yb).sum().item()
            totals["n"] += len(yb)
        totals = self.ctx.sum_across_workers(totals)
        return {"loss": totals["loss"] / totals["n"], "acc": totals["correct"] / totals["n"], "lr": lr}

    def _sgd_step(self, grads, lr: float) -> None:
        cfg = self.config
        for (w, b), (dw, db), (vw, vb) in zip(self.params, grads, self.velocity):
            if cfg.weight_decay:
                dw = dw + cfg.weight_decay * w
            vw.mul_(cfg.momentum).add_(dw)
            vb.mul_(cfg.momentum).add_(db)
            w.sub_(lr * vw)
            b.sub_(lr * vb)
        self.steps += 1

    def evaluate(self, split: str) -> dict[str, float]:
        x, y = self.splits[split]
        loss_sum, correct = 0.0, 0
        for s in range(0, len(y), 4096):
            logits, _ = forward(self.params, x[s : s + 4096], self.config.activation)
            loss, _ = softmax_cross_entropy(logits, y[s : s + 4096])
            loss_sum += loss.item() * len(logits)
            correct += (logits.argmax(1) == y[s : s + 4096]).sum().item()
        return {"loss": loss_sum / len(y), "acc": correct / len(y)}

    def trial_metrics(self) -> dict[str, float]:
        return {"params": float(sum(t.numel() for layer in self.params for t in layer))}

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params, "velocity": self.velocity, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.ctx.device
        self.params = [[t.to(dev) for t in layer] for layer in state["params"]]
        self.velocity = [[t.to(dev) for t in layer] for layer in state["velocity"]]
        self.steps = state["steps"]
