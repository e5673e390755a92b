"""``fcn_counted``: the FCN task, logging every ``train_epoch`` and ``evaluate`` call to a file.

Tests of the sweep's promises must see what happened inside Ray workers and in the driver:
which splits were evaluated, by which process, on which weights. Each call appends one JSON
line (pid, the trial's seed, call, split or epoch, a fingerprint of the weights) to the file
named by the config field ``record``.

Workers learn the task when they unpickle the sweep's data (a ``CountedSplits``): unpickling
imports this module (installed with dlb_tune, so every worker finds it) and registers
``fcn_counted``. It is not registered at import, and ``dlb_tune.tasks`` discovers only its own
package, so the registry-generated tests never see it.

The dlb-tune CLI with this task, for tests that send signals to a real driver process::

    python -c "from dlb_tune.testing import counting_cli; counting_cli()" sweep fcn_counted --space ...
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlb_tune.tasks import get_task, register
from dlb_tune.tasks.fcn import FCN, FCNConfig, load_mnist

COUNTED_TASK = "fcn_counted"


@dataclass
class CountingConfig(FCNConfig):
    record: str = ""  # JSON-lines file every call is appended to
    epoch_sleep_s: float = 0.0  # seconds added to each epoch, so a signal lands mid-trial
    fail_once_at_epoch: int = 0  # >0: the first attempt raises when it starts this (1-based) epoch
    spoil_at_epoch: int = 0  # >0: this (1-based) epoch ends with noisy weights, so it is not the best
    gate: str = ""  # a file holding a number K: a trial starts its 2nd epoch only as one of the first K


class CountingFCN(FCN):
    name = COUNTED_TASK
    Config = CountingConfig

    @classmethod
    def load_data(cls, data_dir: Path, config: CountingConfig, limit: int | None = None) -> Any:
        return CountedSplits(load_mnist(data_dir, config.val_size, limit))

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        if cfg.fail_once_at_epoch == epoch + 1 and not any(r["call"] == "fail" for r in read_calls(cfg.record)):
            self._log(call="fail", epoch=epoch)
            raise RuntimeError(f"planned failure at epoch {epoch + 1}")
        if cfg.gate and epoch == 1:
            self._wait_at_gate(cfg.gate)
        self._log(call="train", epoch=epoch)
        time.sleep(cfg.epoch_sleep_s)
        metrics = super().train_epoch(epoch)
        if cfg.spoil_at_epoch == epoch + 1:
            for t in (t for layer in self.params for t in layer):
                t.add_(torch.randn(t.shape, generator=self.ctx.generator))
        return metrics

    def _wait_at_gate(self, gate: str, ceiling_s: float = 600) -> None:
        """Hold the trial (its first epoch on disk) until the test lets one more trial through."""
        deadline = time.monotonic() + ceiling_s
        while time.monotonic() < deadline:
            passed = sum(1 for r in read_calls(self.config.record) if r["call"] == "gate")
            if passed < int(Path(gate).read_text() or 0):
                break
            time.sleep(0.2)
        self._log(call="gate")

    def evaluate(self, split: str) -> dict[str, float]:
        self._log(call="evaluate", split=split, weights=weights_fingerprint(self.params))
        return super().evaluate(split)

    def _log(self, **entry: Any) -> None:
        with open(self.config.record, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "seed": self.ctx.seed, **entry}) + "\n")


def weights_fingerprint(params) -> float:
    """A number that changes with any weight: the float64 sum of every parameter."""
    return float(sum(t.double().sum() for layer in params for t in layer))


def register_counted_task() -> None:
    """Register ``fcn_counted`` (once; a second call does nothing)."""
    try:
        get_task(COUNTED_TASK)
    except KeyError:
        register(CountingFCN)


class CountedSplits(dict):
    """MNIST splits that register ``fcn_counted`` wherever they are unpickled (Ray workers)."""

    def __reduce__(self):
        return _rebuild, (dict(self),)


def _rebuild(splits: dict) -> CountedSplits:
    register_counted_task()
    return CountedSplits(splits)


def read_calls(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def counting_cli() -> None:
    """``dlb-tune`` with ``fcn_counted`` registered."""
    register_counted_task()
    from dlb_tune.cli import main as cli_main

    cli_main()
