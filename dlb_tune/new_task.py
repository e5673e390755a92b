"""``dlb-tune new-task NAME``: a working task module and its search space, for the user to change.

The module is a small real model (a two-block CNN) on a torchvision image-classification data
set the user names, with every method of the task contract filled in and commented; it passes
``dlb-tune check-task NAME --task-module NAME.py`` unchanged. The space file goes beside the
module, where an outside task's default space is looked for (``tasks.space_file_beside``).
"""

from __future__ import annotations

import keyword
from pathlib import Path

# Data sets whose torchvision class takes (root, train=..., download=...) and holds .data, .targets.
DATASETS = ("MNIST", "FashionMNIST", "KMNIST", "QMNIST", "CIFAR10", "CIFAR100")


class TemplateError(ValueError):
    """A name, data set or folder the template cannot be written with. One line, for the user."""


def write_task(name: str, folder: Path, dataset: str = "MNIST", force: bool = False) -> tuple[Path, Path]:
    """Write ``<folder>/<name>.py`` and ``<folder>/<name>.yaml``; returns both paths."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise TemplateError(f"task name '{name}' must be a Python identifier (letters, digits, _)")
    matches = [d for d in DATASETS if d.lower() == dataset.lower()]
    if not matches:
        raise TemplateError(f"unknown data set '{dataset}'; the template reads one of {', '.join(DATASETS)}")
    folder = Path(folder).expanduser()
    module, space = folder / f"{name}.py", folder / f"{name}.yaml"
    taken = [str(p) for p in (module, space) if p.exists()]
    if taken and not force:
        raise TemplateError(f"{' and '.join(taken)} already exist(s); pass --force to overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    values = {"name": name, "Name": name.title().replace("_", ""), "dataset": matches[0]}
    module.write_text(MODULE.format(**values))
    space.write_text(SPACE.format(**values))
    return module, space


MODULE = '''"""Task '{name}': a small CNN on torchvision's {dataset}, tuned by dlb-tune.

Written by `dlb-tune new-task {name}`; change anything. The contract (dlb_tune/tasks/base.py):
one config dataclass whose fields are the hyperparameters, one Task subclass registered with
@register. The search space is {name}.yaml beside this file.

    dlb-tune check-task {name} --task-module {name}.py --data-dir DATA
    dlb-tune sweep {name} --task-module {name}.py --data-dir DATA
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlb_tune.tasks import DataError, Task, TrialContext, TrialError, register

DATASET = "{dataset}"  # a torchvision data set, read from the data folder in torchvision's layout
VAL_FRACTION = 0.1  # of the training split, held out (fixed seed) to rank trials; test is seen once


@dataclass
class {Name}Config:
    """The hyperparameters: every field can be searched in {name}.yaml (same names)."""

    lr: float = 1e-3  # Adam's step size (SGD: try 10x more)
    optimizer: str = "adam"  # adam | sgd (momentum 0.9)
    weight_decay: float = 0.0  # L2 penalty, decoupled from the step size only for adam
    channels: int = 16  # filters of the first conv block; the second has twice as many
    dropout: float = 0.2  # before the classifier
    batch_size: int = 128  # examples per step


@register
class {Name}Task(Task):
    name = "{name}"
    Config = {Name}Config
    smoke = {{"channels": 4, "batch_size": 32}}  # one epoch in well under a second on a CPU
    allowed_values = {{"optimizer": ("adam", "sgd")}}  # a misspelt name fails before the sweep

    @classmethod
    def load_data(cls, data_dir: Path, config: {Name}Config, limit: int | None = None) -> dict[str, Any]:
        """Train / val / test as float images [N, C, H, W] in [0, 1] and int64 labels, once per sweep.

        ``limit``: at most this many examples per split (smoke runs), the first ones of each.
        """
        import torchvision.datasets

        try:
            train = getattr(torchvision.datasets, DATASET)(str(data_dir), train=True, download=False)
            test = getattr(torchvision.datasets, DATASET)(str(data_dir), train=False, download=False)
        except (RuntimeError, OSError) as e:  # torchvision: "Dataset not found or corrupted"
            raise DataError(f"{{DATASET}} not found in {{data_dir}} (torchvision's layout; get it once with "
                            f"torchvision.datasets.{{DATASET}}(root, download=True)): {{e}}") from None
        order = torch.randperm(len(train.targets), generator=torch.Generator().manual_seed(0))
        n_val = int(len(order) * VAL_FRACTION)
        picks = {{"train": (train, order[n_val:]), "val": (train, order[:n_val]),
                 "test": (test, torch.arange(len(test.targets)))}}
        data = {{split: {{"x": _images(ds.data, idx[:limit]), "y": torch.as_tensor(ds.targets)[idx[:limit]]}}
                for split, (ds, idx) in picks.items()}}
        data["classes"] = len(train.classes)
        return data

    def __init__(self, config: {Name}Config, data: dict[str, Any], ctx: TrialContext) -> None:
        super().__init__(config, data, ctx)  # checks every field against allowed_values
        c, channels = config.channels, data["train"]["x"].shape[1]
        self.model = ctx.wrap_model(nn.Sequential(
            nn.Conv2d(channels, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # any image size -> [N, 2c]
            nn.Dropout(config.dropout), nn.Linear(2 * c, data["classes"]),
        ))
        params = self.model.parameters()
        if config.optimizer == "adam":
            self.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split (this worker's shard under data parallelism)."""
        x, y = self.data["train"]["x"], self.data["train"]["y"]
        self.model.train()
        totals = {{"loss": 0.0, "correct": 0.0, "n": 0.0}}
        for idx in self.ctx.batches(len(y), self.config.batch_size):
            xb, yb = x[idx].to(self.ctx.device), y[idx].to(self.ctx.device)
            logits = self.model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            if not torch.isfinite(loss):
                raise TrialError(f"loss is {{loss.item()}} at epoch {{epoch}}: lr {{self.config.lr}} too high?")
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            totals["loss"] += loss.item() * len(yb)
            totals["correct"] += (logits.argmax(1) == yb).sum().item()
            totals["n"] += len(yb)
        totals = self.ctx.sum_across_workers(totals)  # every worker reports the whole epoch
        return {{"loss": totals["loss"] / totals["n"], "acc": totals["correct"] / totals["n"]}}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Loss and accuracy on "val" (ranks trials) or "test" (once, for the winner)."""
        x, y = self.data[split]["x"], self.data[split]["y"]
        self.model.eval()
        loss, correct = 0.0, 0
        for idx in torch.arange(len(y)).split(512):  # every example on every worker: no shards
            xb, yb = x[idx].to(self.ctx.device), y[idx].to(self.ctx.device)
            logits = self.model(xb)
            loss += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
        return {{"loss": loss / len(y), "acc": correct / len(y)}}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds: a resumed trial continues exactly where it stopped."""
        model = getattr(self.model, "module", self.model)  # unwrapped under data parallelism
        return {{"model": model.state_dict(), "opt": self.opt.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        getattr(self.model, "module", self.model).load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def trial_metrics(self) -> dict[str, float]:
        """Reported with every epoch: lets a multi-objective space trade accuracy for size."""
        return {{"params": float(sum(p.numel() for p in self.model.parameters()))}}


def _images(data: Any, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` of uint8 [N, H, W] (MNIST-like) or [N, H, W, C] (CIFAR-like) as float [n, C, H, W] in [0, 1]."""
    x = torch.as_tensor(data)[idx]
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0)
'''

SPACE = '''# Search space of task '{name}' ({name}.py beside this file). Keys under params are the fields of
# {Name}Config; a constant fixes a field, {{distribution: [args]}} searches it.
task: {name}
metric: val_acc
mode: max
max_epochs: 6
grace_period: 1       # ASHA: epochs before a trial can be stopped
reduction_factor: 3   # ASHA: keep the top third at each rung
num_samples: 8
params:
  lr: {{loguniform: [3.0e-4, 1.0e-2]}}
  optimizer: adam
  weight_decay: {{loguniform: [1.0e-6, 1.0e-3]}}
  channels: {{choice: [8, 16, 32]}}
  dropout: {{quniform: [0.0, 0.5, 0.1]}}
  batch_size: 128
initial:              # runs first: the module's defaults
  - {{lr: 1.0e-3, weight_decay: 1.0e-6, channels: 16, dropout: 0.2}}
'''
