"""A sweep's run-level options (``SweepOptions``: what ``sweep.json`` records), and the error of a
request the machine or cluster cannot meet. Light: the command line builds these before it knows
whether the sweep will start at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dlb_tune.cluster import NODE_TIMEOUT_S


class ResourceError(RuntimeError):
    """A resource request that cannot be satisfied. One line, for the user."""


@dataclass
class SweepOptions:
    """Run-level settings of a sweep; hyperparameters live in the search-space file."""

    task: str
    task_module: str | None = None  # a task from outside the package: a .py file or a dotted module name
    data_dir: str | None = None  # None: $DLB_TUNE_DATA, else the per-user default (places.default_data_dir)
    space: str | None = None  # None: search_spaces/<task>.yaml
    overrides: list[str] = field(default_factory=list)  # --set key=value
    objective: str | None = None  # a named multi-objective mode of the space file
    name: str | None = None  # None: <task>-<timestamp>
    storage: str | None = None  # None: $DLB_TUNE_RESULTS or ./dlb-tune-runs
    num_samples: int | None = None  # None: the space file's
    max_epochs: int | None = None  # None: the space file's
    time_budget_s: float | None = None  # None: the space file's
    cpus: float | None = None  # total for the sweep; None: all of this machine / the cluster
    gpus: float | None = None  # total for the sweep; None: all detected
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1  # >1: Ray Train data parallelism inside each trial
    ray_train: bool = False  # run trials as TorchTrainers even with one worker (slower to start)
    seed: int = 0
    sampler: str | None = None  # tpe | random; None: the space file's search.sampler (tpe by default)
    scheduler: str = "asha"  # asha | fifo
    address: str | None = None  # join an existing cluster (auto, ray://...)
    node_timeout_s: float = NODE_TIMEOUT_S  # on a cluster: stop when trials wait this long for nodes
    limit: int | None = None  # examples per split (smoke runs)
    smoke: bool = False  # tiny model, 2 epochs, 2 samples, small data
    max_failures: int = 0  # retries of a failing trial
    seeds: int | None = None  # >1: at the end, re-train the top configs with this many seeds and rank them;
    # None: compare_by's default (compared.DEFAULT_SEEDS), else none
    enqueue: str | None = None  # a fixed space file (`dlb-tune best`): its config runs first, before the initial points

    def resolved_storage(self) -> str:
        from dlb_tune.storage import resolve_storage

        return resolve_storage(self.storage)

    def resolved_data_dir(self) -> Path:
        from dlb_tune.datasets import resolve_data_dir

        return resolve_data_dir(self.data_dir)

    @property
    def data_parallel(self) -> bool:
        """Trials run under Ray Train (TorchTrainer): several workers, or asked for."""
        return self.workers_per_trial > 1 or self.ray_train
