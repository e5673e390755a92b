"""A sweep's run-level options (``SweepOptions``: what ``sweep.json`` records), and the error of a
request the machine or cluster cannot meet. Light: the command line builds these before it knows
whether the sweep will start at all."""

from __future__ import annotations

import os
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


def local_cpus() -> int:
    """The cores this process may run on (its affinity), which a local Ray can use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_gpus() -> int:
    """NVIDIA GPUs this process can see, without importing torch: the driver's entries (else
    ``nvidia-smi -L``), cut to the ids CUDA_VISIBLE_DEVICES lists before its first invalid one."""
    driver = Path("/proc/driver/nvidia/gpus")
    if driver.is_dir():
        found = sum(1 for _ in driver.iterdir())
    else:
        import shutil
        import subprocess

        smi = shutil.which("nvidia-smi")
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout if smi else ""
        except (OSError, subprocess.SubprocessError):
            out = ""
        found = sum(line.startswith("GPU ") for line in out.splitlines())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    ids = []
    for item in visible.split(","):
        item = item.strip()
        if not item or item.startswith("-"):  # CUDA ignores this id and every one after it
            break
        ids.append(item)
    return min(found, len(ids))


def check_machine(opts: SweepOptions) -> None:
    """A local sweep's --cpus/--gpus against this machine, before Ray (or torch) starts; with
    --address the cluster's resources are checked once connected (engine.check_resources)."""
    if opts.address:
        return
    cpus, gpus = local_cpus(), None
    if opts.cpus is not None and opts.cpus > cpus:
        raise ResourceError(f"--cpus {opts.cpus:g} asked for, but this machine has {cpus} CPU(s) "
                            f"(use --address to run on a cluster)")
    per_trial_cpus = opts.cpus_per_trial * max(1, opts.workers_per_trial)
    if per_trial_cpus > (opts.cpus if opts.cpus is not None else cpus):
        raise ResourceError(f"a trial needs {per_trial_cpus:g} CPU(s) but the sweep may use "
                            f"{opts.cpus if opts.cpus is not None else cpus:g}")
    wanted = opts.gpus if opts.gpus is not None else opts.gpus_per_trial * max(1, opts.workers_per_trial)
    if wanted > 0 and wanted > (gpus := local_gpus()):
        raise ResourceError(f"{wanted:g} GPU(s) asked for, but this machine has {gpus} "
                            f"(use --address to run on a GPU cluster)")
