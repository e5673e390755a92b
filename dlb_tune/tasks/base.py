"""The task contract: what a task module provides, and what the sweep gives it.

A task is one module under ``dlb_tune/tasks/`` holding

* a config dataclass whose fields are the task's hyperparameters (defaults that run),
* a ``Task`` subclass decorated with ``@register``, which loads data once per sweep
  (``load_data``), builds model and optimiser from a config (``__init__``), trains one
  epoch (``train_epoch``) and evaluates a split (``evaluate``).

The sweep (``dlb_tune.trainable``) owns everything else: seeding, threads, devices,
reporting to Tune, checkpoints, early stopping, the final test evaluation.

Config values are validated before Ray starts: the search space calls ``Task.validate(field,
value)`` for every constant, every choice value and both ends of every range, and ``Task.__init__``
calls it on every field of the config it is given. A task states its rules there (names from a
fixed set in ``allowed_values``, anything else by overriding ``validate``), never in space.py.

Metric names: ``train_epoch`` returns ``{"loss": .., "acc": ..}`` and the sweep reports them
as ``train_loss``, ``train_acc``; ``evaluate("val")`` becomes ``val_*``, ``evaluate("test")``
``test_*``. ``trial_metrics`` (parameter count, embedding coverage, ...) is reported unprefixed.

After the sweep, ``summarize`` reads the trials through ``Trials`` (one ``TrialSummary`` each),
never the results table itself, so the table's layout can change without touching a task.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

if TYPE_CHECKING:  # torch is imported where a trial runs: listing tasks and checking input need none
    import torch


class DataError(Exception):
    """A data set is missing or malformed. The message is one line, shown to the user as is."""


def fetch_hint(task: str) -> str:
    """The end of every missing-data message: the command that gets the data."""
    return f"fetch it with `dlb-tune data fetch {task}`"


class TrialError(Exception):
    """A trial cannot go on (non-finite loss, impossible config). Ends the trial as errored."""


class ConfigError(ValueError):
    """A value a config field cannot take. One line naming the rule, not the field."""


def _torch():
    import torch

    return torch


@dataclass
class TrialContext:
    """What the sweep hands a task besides its config and data."""

    device: torch.device = field(default_factory=lambda: _torch().device("cpu"))
    max_epochs: int = 10  # planned epochs, for learning-rate schedules and annealing
    seed: int = 0
    rank: int = 0  # data-parallel rank under Ray Train; 0 in a plain trial
    world_size: int = 1  # data-parallel workers under Ray Train; 1 in a plain trial

    def __post_init__(self) -> None:
        self.generator = _torch().Generator().manual_seed(self.seed)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def batches(self, n: int, batch_size: int, shuffle: bool = True) -> Iterator[torch.Tensor]:
        """Index batches over ``n`` examples; under data parallelism, this worker's shard.

        Every worker draws the same permutation (shared generator state) and takes every
        ``world_size``-th batch, so shards are disjoint and equal in count.
        """
        torch = _torch()
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        starts = range(0, n, batch_size)
        if self.distributed:
            usable = len(starts) - len(starts) % self.world_size  # equal steps on every worker
            starts = starts[:usable][self.rank :: self.world_size]
        for s in starts:
            yield order[s : s + batch_size]

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel under Ray Train, the model itself otherwise."""
        model = model.to(self.device)
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """Average tensors (hand-written gradients) across data-parallel workers, in place."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(self.world_size)

    def sum_across_workers(self, values: dict[str, float]) -> dict[str, float]:
        """Sum per-worker totals (loss sums, correct counts) so every worker sees the whole."""
        if not self.distributed or not values:
            return values
        import torch
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return dict(zip(keys, t.tolist()))


class Task:
    """Base class of every task. Subclasses set the class attributes and override the methods."""

    name: ClassVar[str]
    Config: ClassVar[type]  # the hyperparameter dataclass
    # Config fields that shape the data ``load_data`` builds (dataset, image size, ...). They are
    # fixed for a whole sweep (the data is loaded once), so the search space may not sample them.
    data_fields: ClassVar[tuple[str, ...]] = ()
    # Whether the task supports Ray Train data parallelism (``--workers-per-trial > 1``).
    supports_ddp: ClassVar[bool] = True
    # Config overrides that make one epoch run in seconds on a CPU (tiny model): the smoke path
    # of tests and of ``dlb-tune sweep TASK --smoke``.
    smoke: ClassVar[dict[str, Any]] = {}
    # Field -> the values it may take, for fields that name one of a fixed set (an optimizer, a
    # schedule): a misspelt name fails before the sweep instead of inside every trial.
    allowed_values: ClassVar[dict[str, tuple]] = {}
    # The data sets (``dlb_tune.datasets.DataSet``) the loader reads: what `dlb-tune data fetch TASK`
    # downloads and `data list` shows. A set two tasks read is declared once and named by both.
    data_sets: ClassVar[tuple] = ()
    # A metric among a multi-objective sweep's objectives: the Pareto trial best on it gets
    # ``test_report``'s figures too, beside the winner's (``finish.pareto_figures``). None: none.
    pareto_figures_by: ClassVar[str | None] = None
    # What makes a Pareto trial's figures worth drawing beyond its rank (e.g. a VAE whose discrete
    # code is used): the words for the summary, and ``pareto_figures_uses`` the rule itself.
    pareto_figures_rule: ClassVar[str | None] = None

    @classmethod
    def pareto_figures_uses(cls, metrics: dict[str, Any]) -> bool:
        """Whether a Pareto trial (its last reported metrics) meets ``pareto_figures_rule``."""
        return True

    @classmethod
    def validate(cls, name: str, value: Any) -> None:
        """Raise ``ConfigError`` if config field ``name`` cannot take ``value``.

        Called by the search space before Ray starts, on values that already have the field's
        type: every constant, every choice value, both ends of a range (so a rule on a number
        must hold on an interval whenever it holds at its ends). Called again in ``__init__`` on
        every field. Override for rules beyond ``allowed_values`` (a comma-separated list to
        parse), calling ``super().validate``.
        """
        allowed = cls.allowed_values.get(name)
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{value!r} is not one of {', '.join(map(str, allowed))}")

    @classmethod
    def check_config(cls, config: Any) -> None:
        """``validate`` every field of a built config: a bad value ends the trial as errored."""
        for f in dataclasses.fields(config):
            try:
                cls.validate(f.name, getattr(config, f.name))
            except ConfigError as e:
                raise TrialError(f"{f.name}: {e}") from None

    @classmethod
    def load_data(cls, data_dir: Path, config: Any, limit: int | None = None) -> Any:
        """Load and preprocess the data once per sweep (on the driver).

        ``limit``: at most this many examples per split (smoke runs and tests), taken
        deterministically (first N after a fixed-seed shuffle, or stratified where it matters).

        Returns a picklable object (usually a dict of tensors) with train, val and test parts;
        it goes to the Ray object store and every trial reads it from there. Raises
        ``DataError`` with one line naming what is missing and where the original lives.
        """
        raise NotImplementedError

    @classmethod
    def check_metrics(cls, data: Any, metrics: list[str]) -> None:
        """Raise ``DataError`` (one line naming the fix) when ``data`` cannot give one of the
        sweep's objectives ``metrics``; on the driver, after ``load_data``, before Ray starts."""

    def __init__(self, config: Any, data: Any, ctx: TrialContext) -> None:
        self.check_config(config)
        self.config = config
        self.data = data
        self.ctx = ctx

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split; returns at least ``loss`` (and ``acc`` when it applies)."""
        raise NotImplementedError

    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on ``"val"`` or ``"test"``: at least ``loss`` (and ``acc`` when it applies)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training: model, optimiser, schedules."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def count_params(cls, config: Any) -> int:
        """The number of parameters of the model ``config`` builds, without data or training (on
        CPU): what a space's ``max_params`` is checked against before a trial starts. A task that
        cannot count cheaply leaves this out, and a space with ``max_params`` is refused for it."""
        raise NotImplementedError

    def trial_metrics(self) -> dict[str, float]:
        """Per-trial constants reported with every epoch (parameter count, embedding coverage)."""
        return {}

    def figures(self, split: str = "val") -> dict[str, torch.Tensor]:
        """Image grids (float [3, H, W] in [0, 1]) showing the model now: reconstructions,
        traversals, misclassified examples. Written to the trial's TensorBoard log whenever the
        trial improves on its best epoch. A task may also return ``(grids, notes)``."""
        return {}

    def test_report(self, out_dir: Path) -> dict[str, Any]:
        """Extra results of the final test evaluation (confusion matrix, figures) for ``final.json``.

        Called once, on the best checkpoint, after ``evaluate("test")``. May write files into
        ``out_dir`` and return their names.
        """
        return {}

    @classmethod
    def summarize(cls, trials: Trials) -> dict[str, Any]:
        """Extra sweep-level entries for ``final.json`` (Pareto fronts, leaderboards) from every
        trial of the sweep, best first. Plain Python values: the writer makes them JSON."""
        return {}


@dataclass(frozen=True)
class TrialSummary:
    """One trial as ``summarize`` sees it; values are plain Python, None where unknown."""

    trial_id: str
    status: str | None  # completed, stopped_early, cut_by_budget, incomplete or errored
    config: dict[str, Any]  # the trial's hyperparameters, by config field name
    best: float | None  # best value of the sweep metric (``Trials.metric``) over its epochs
    epochs: int | None  # epochs trained
    wall_s: float | None  # seconds of training
    metrics: dict[str, float]  # the last reported value of every other metric (val_acc, params, ...)


# The results table's bookkeeping columns: not metrics of the model.
_TABLE_FIELDS = ("trial_id", "status", "epochs", "wall_s", "error", "best_epoch", "node_id", "path")


@dataclass(frozen=True)
class Trials(Sequence):
    """The sweep's trials in the results table's order (best first), and the metric that ranks them."""

    metric: str  # e.g. "val_acc"; ``TrialSummary.best`` is its best value
    items: tuple[TrialSummary, ...] = ()

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_table(cls, table: Any, metric: str) -> Trials:
        """The view of a results table (a DataFrame: one row per trial, ``config/<key>`` columns,
        ``best_<metric>``, bookkeeping columns and the last value of each reported metric)."""
        rows = [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")]
        return cls(metric, tuple(_trial_summary(row, metric) for row in rows))


def _trial_summary(row: dict[str, Any], metric: str) -> TrialSummary:
    best = f"best_{metric}"
    config = {k.removeprefix("config/"): v for k, v in row.items() if k.startswith("config/")}
    metrics = {k: v for k, v in row.items()
               if k not in (*_TABLE_FIELDS, best) and not k.startswith("config/")
               and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return TrialSummary(trial_id=row.get("trial_id"), status=row.get("status"), config=config, best=row.get(best),
                        epochs=row.get("epochs"), wall_s=row.get("wall_s"), metrics=metrics)


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars; NaN (a trial that never reported a column) -> None."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


_REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task known to the CLI, the sweep and the shared tests."""
    if not dataclasses.is_dataclass(cls.Config):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass")
    _REGISTRY[cls.name] = cls
    return cls


def config_fields(task: type[Task]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(task.Config)}


def counts_params(task: type[Task]) -> bool:
    """Whether ``task`` overrides ``Task.count_params`` (a space's ``max_params`` needs it)."""
    return getattr(task.count_params, "__func__", None) is not Task.count_params.__func__


def check_finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise TrialError(f"{what} is {value}: training diverged")
    return value
