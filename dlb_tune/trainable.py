"""The trial: one config trained epoch by epoch, reporting to Tune and checkpointing.

``epoch_loop`` is the shared training loop; ``tune_trial`` runs it in the Tune function
trainable itself (the default, fast to start). ``dlb_tune.distributed`` runs the same loop on
Ray Train workers when a trial is data-parallel.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import torch

from dlb_tune.objective import Objective
from dlb_tune.tasks import TrialContext, TrialError, get_task

# Ray is imported inside the functions that run under it: importing it takes seconds, and the
# plan command and the final test evaluation use this module without it.

STATE_FILE = "state.pt"


def trial_seed(base_seed: int, key: str) -> int:
    """A per-trial seed that is stable across restarts (unlike ``hash``)."""
    return (base_seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31)


def trial_key(context) -> str:
    """What seeds a trial: its place in the sweep, the number ``engine.trial_name`` ends its name
    with (Tune's trial ids are random: a sweep run again with the same seed would train every
    trial from a different start); the trial id for a trial named otherwise."""
    place = (context.get_trial_name() or "").rsplit("_", 1)[-1]
    return f"#{place}" if place.isdigit() else (context.get_trial_id() or "local")


def pick_device(use_gpu: bool) -> torch.device:
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def build_task(task_name: str, config: dict[str, Any], data: Any, ctx: TrialContext):
    task_cls = get_task(task_name)
    return task_cls(task_cls.Config(**config), data, ctx)


def start_trial(task_name: str, config: dict[str, Any], data: Any, *, seed: int, max_epochs: int, threads: int,
                device: torch.device, checkpoint: Any = None, context: type[TrialContext] = TrialContext,
                **context_args: Any) -> tuple[Any, TrialContext, dict[str, Any] | None]:
    """A trial's task, ready to train: torch's threads, its context, seeded, and the state to resume.

    ``checkpoint``: a Ray checkpoint (Tune's or Train's) to resume from, None for a fresh start.
    ``context`` and ``context_args``: a ``TrialContext`` subclass and its extra fields (the
    worker's rank, a calibration's batch limit). Returns ``(task, ctx, start_state)`` for
    ``epoch_loop``.
    """
    torch.set_num_threads(max(1, threads))
    ctx = context(device=device, max_epochs=max_epochs, seed=seed, **context_args)
    torch.manual_seed(ctx.seed)
    task = build_task(task_name, config, data, ctx)
    return task, ctx, restored_state(checkpoint)


def restored_state(checkpoint: Any) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return load_state(Path(d) / STATE_FILE)


def save_state(path: Path, task, epoch: int, best: float | None, generator: torch.Generator) -> None:
    # torch's global generator too: dropout draws from it, and a resumed trial must draw what
    # the uninterrupted one would have
    torch.save({"task": task.state_dict(), "epoch": epoch, "best": best, "rng": generator.get_state(),
                "torch_rng": torch.get_rng_state()}, path)


def load_state(path: Path) -> dict[str, Any]:
    """A saved ``state.pt``, read as tensors and plain values only: a checkpoint in shared storage
    is written by whoever can write there, and unpickling anything else could run their code."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's message is a page; the line naming the culprit is enough
        culprit = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "not a weights-only file")
        raise TrialError(f"{path}: refused, it holds more than tensors and plain values ({culprit})") from None
    except (RuntimeError, EOFError) as e:  # torch's zip reader on a cut file; the unpickler on an empty one
        why = str(e).split(". ")[0] or type(e).__name__
        raise TrialError(f"{path}: not a checkpoint, damaged or cut short ({why})") from None


def epoch_loop(
    task,
    ctx: TrialContext,
    *,
    metric: str,
    mode: str,
    start_state: dict[str, Any] | None,
    report: Callable[[dict[str, float], Path | None], None],
    is_reporter: bool = True,
    on_improved: Callable[[int], None] | None = None,
) -> None:
    """Train ``ctx.max_epochs`` epochs, reporting every epoch; resume from ``start_state``.

    ``report(metrics, checkpoint_dir)`` hands metrics (and a folder holding ``state.pt``) to
    Tune or Ray Train. Every epoch is checkpointed so a resumed trial loses nothing; Tune keeps
    the latest and the best by ``metric``.
    """
    goal = Objective(metric, mode)
    start, best = 0, None
    if start_state is not None:
        task.load_state_dict(start_state["task"])
        ctx.generator.set_state(start_state["rng"])
        if "torch_rng" in start_state:  # checkpoints written before it was saved have none
            torch.set_rng_state(start_state["torch_rng"])
        start, best = start_state["epoch"] + 1, start_state["best"]
    constants = task.trial_metrics()
    for epoch in range(start, ctx.max_epochs):
        t0 = time.perf_counter()
        train = task.train_epoch(epoch)
        val = task.evaluate("val")
        metrics = {f"train_{k}": v for k, v in train.items()}
        metrics.update({f"val_{k}": v for k, v in val.items()})
        metrics.update(constants)
        value = metrics.get(metric)
        if value is None:
            raise TrialError(f"the task reported no '{metric}'; it reports {sorted(metrics)}")
        if not all(math.isfinite(v) for v in (metrics["train_loss"], value)):
            raise TrialError(f"non-finite loss or {metric} at epoch {epoch + 1}: training diverged")
        improved = goal.better(value, best)
        if improved:
            best = value
        # ended_at: this process's clock at the epoch's end, to the sub-second (Ray's timestamp is whole seconds)
        metrics.update({"epoch": epoch + 1, "epoch_s": time.perf_counter() - t0, f"best_{metric}": best,
                        "ended_at": time.time()})
        if not is_reporter:
            report(metrics, None)
            continue
        if improved and on_improved is not None:
            on_improved(epoch + 1)
        with tempfile.TemporaryDirectory() as tmp:
            save_state(Path(tmp) / STATE_FILE, task, epoch, best, ctx.generator)
            report(metrics, Path(tmp))


def tune_trial(config: dict[str, Any], *, data: Any, task_name: str, metric: str, mode: str,
               max_epochs: int, seed: int, threads: int, use_gpu: bool) -> None:
    """The Tune function trainable: one trial in this process."""
    from ray import tune

    task, ctx, start_state = start_trial(task_name, config, data, seed=trial_seed(seed, trial_key(tune.get_context())),
                                         max_epochs=max_epochs, threads=threads, device=pick_device(use_gpu),
                                         checkpoint=tune.get_checkpoint())
    node_id = node_label()

    def report(metrics: dict[str, float], ckpt_dir: Path | None) -> None:
        ckpt = tune.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None
        tune.report({**metrics, "node_id": node_id, **gpu_memory(ctx.device)}, checkpoint=ckpt)

    trial_dir = tune.get_context().get_trial_dir()
    epoch_loop(task, ctx, metric=metric, mode=mode, start_state=start_state, report=report,
               on_improved=(lambda epoch: write_figures(task, trial_dir, epoch)) if trial_dir else None)


def write_figures(task, log_dir: str, step: int) -> None:
    """The task's image grids into TensorBoard (tag ``figures/<name>``), when it has any."""
    out = task.figures("val")
    grids = out[0] if isinstance(out, tuple) else out
    if not grids:
        return
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=log_dir, filename_suffix=".figures") as writer:
        for name, grid in grids.items():
            writer.add_image(f"figures/{name}", grid.clamp(0, 1), global_step=step)


def gpu_memory(device: torch.device) -> dict[str, float]:
    """This trial's peak CUDA memory so far, in MiB (each trial is its own process, so packed
    trials are told apart); nothing on the CPU."""
    if device.type != "cuda":
        return {}
    return {"gpu_mem_mib": torch.cuda.max_memory_allocated(device) / 2**20}


def node_label() -> str:
    """Which Ray node runs this code (hostnames and IPs repeat on a one-machine cluster). The whole
    id: simulated clusters' node ids share long prefixes."""
    import ray

    return ray.get_runtime_context().get_node_id()


def evaluate_checkpoint(task_name: str, config: dict[str, Any], data: Any, checkpoint_dir: str,
                        out_dir: Path, max_epochs: int) -> dict[str, Any]:
    """The one test-split evaluation: the best trial's best checkpoint, at the end of a sweep."""
    task = restored_task(task_name, config, data, checkpoint_dir, max_epochs)
    test = {f"test_{k}": v for k, v in task.evaluate("test").items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    extras = task.test_report(out_dir)
    return {**test, **({"test_report": extras} if extras else {})}


def checkpoint_figures(task_name: str, config: dict[str, Any], data: Any, checkpoint_dir: str,
                       out_dir: Path, max_epochs: int) -> dict[str, Any]:
    """A checkpoint's ``test_report`` figures alone: no test metric is computed (``evaluate_checkpoint``
    reads the test split once, for the winner)."""
    task = restored_task(task_name, config, data, checkpoint_dir, max_epochs)
    out_dir.mkdir(parents=True, exist_ok=True)
    return task.test_report(out_dir)


def restored_task(task_name: str, config: dict[str, Any], data: Any, checkpoint_dir: str, max_epochs: int):
    """A trial's task with the model of its checkpoint in ``checkpoint_dir``."""
    ctx = TrialContext(device=pick_device(True), max_epochs=max_epochs, seed=0)
    task = build_task(task_name, config, data, ctx)
    task.load_state_dict(load_state(Path(checkpoint_dir) / STATE_FILE)["task"])
    return task


def default_threads(cpus_per_trial: float) -> int:
    return max(1, min(int(cpus_per_trial), os.cpu_count() or 1))
