"""``dlb-tune plan``: what a sweep will cost, before launching it.

1. Load the data exactly as the sweep would (timed: the sweep pays it too).
2. For a few corners of the space (extremes of the parameters that set the model's size, the
   rest at mid-range), build the task and time one epoch of training and validation on the
   first ``calibration_batches`` batches, then scale each batch loop to its full length. The
   truncation happens in ``TrialContext.batches``, which every task iterates, so no task needs
   to know it is being timed. Saving a checkpoint is timed too (the sweep saves every epoch).
3. Simulate the sweep: trials start as slots free up (concurrency from the resources given),
   each runs at a corner's speed, and ASHA stops them by Ray's own rule (at each rung, a trial
   below the (1 - 1/reduction_factor) quantile of the values recorded there so far stops).
   Trial quality is random and keeps its rank from rung to rung. Repeated a few hundred times:
   expected trial-epochs and wall time with a 10-90% range.

Not counted: Ray's start-up, the searcher's own time, and the slow-down when concurrent trials
share cores (calibration runs one at a time). The simulation draws trial quality independently
of start order, as random search does; Optuna's TPE proposes better configs as it learns, so
more of its trials pass the rungs than simulated. Saved as ``plan.json`` in the experiment folder when a name is given, so
``dlb-tune report`` can set it against the actual.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from dlb_tune.asha import estimate, rungs
from dlb_tune.distributions import SpaceError
from dlb_tune.experiment import check_name, experiment_dir, write_plan
from dlb_tune.options import ResourceError
from dlb_tune.space import SweepSpec
from dlb_tune.prepare import load_data, prepare_spec
from dlb_tune.tasks import TrialContext
from dlb_tune.trainable import default_threads, pick_device, save_state, start_trial

# Parameter names that usually set how much compute an epoch takes (model size, batch size,
# architecture). ``--vary`` replaces this guess.
SIZE_LIKE = re.compile(r"size|dim|layer|width|channel|unit|hidden|block|depth|filter|head|embed|batch|cell|arch|len|conv")


# --- corners ------------------------------------------------------------------------------------


def size_params(spec: SweepSpec, vary: list[str] | None = None) -> list[str]:
    searched = spec.searched()
    if vary:
        unknown = [v for v in vary if v not in searched]
        if unknown:
            raise SpaceError(f"--vary {', '.join(unknown)}: not searched in this space (searched: {', '.join(searched)})")
        return list(vary)
    return [p for p in searched if SIZE_LIKE.search(p)]


def corners(spec: SweepSpec, vary: list[str], max_corners: int) -> list[dict[str, Any]]:
    """Configs at the corners of the size-like parameters: all-low and all-high first."""
    base = {k: dist.middle() for k, dist in spec.params.items()}  # mid-range where not varied
    if not vary:
        return [base]
    axes = [spec.params[p].extremes() for p in vary]
    combos = list(itertools.product(*axes))
    first = [combos[0], combos[-1]] if len(combos) > 1 else combos
    rest = [c for c in combos if c not in first]
    random.Random(0).shuffle(rest)
    chosen = (first + rest)[:max(1, max_corners)]
    return [{**base, **dict(zip(vary, c))} for c in chosen]


# --- calibration --------------------------------------------------------------------------------


@dataclass
class _Loop:
    total: int  # batches the full loop would run
    times: list[float]  # perf_counter when each batch was handed out
    end: float | None = None  # perf_counter when the next batch was asked for after the last


@dataclass
class CalibrationContext(TrialContext):
    """A TrialContext whose batch loops stop after ``max_batches``, remembering their length."""

    max_batches: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        self.loops: list[_Loop] = []

    def batches(self, n: int, batch_size: int, shuffle: bool = True) -> Iterator[torch.Tensor]:
        loop = _Loop(total=math.ceil(n / batch_size), times=[])
        self.loops.append(loop)
        for i, idx in enumerate(super().batches(n, batch_size, shuffle)):
            if i >= self.max_batches:
                break
            loop.times.append(time.perf_counter())
            yield idx
        loop.end = time.perf_counter()

    def remaining_s(self) -> float:
        """Seconds the loops cut short would still have taken, at their steady per-batch rate."""
        extra = 0.0
        for loop in self.loops:
            k = len(loop.times)
            if k == 0 or loop.end is None or loop.total <= k:
                continue
            # The first batch pays one-off costs (allocation, kernel selection): rate from the rest.
            per_batch = (loop.end - loop.times[1]) / (k - 1) if k > 1 else loop.end - loop.times[0]
            extra += per_batch * (loop.total - k)
        return extra

    def take(self) -> float:
        extra = self.remaining_s()
        self.loops = []
        return extra


def calibrate(spec: SweepSpec, config: dict[str, Any], data: Any, *, max_epochs: int, threads: int,
              use_gpu: bool, max_batches: int) -> dict[str, Any]:
    """Time building the task, one training epoch, one validation pass and one checkpoint."""
    previous = torch.get_num_threads()  # the trial's threads are set for the calibration only
    try:
        return _timed_epoch(spec, config, data, max_epochs=max_epochs, threads=threads, use_gpu=use_gpu,
                            max_batches=max_batches)
    finally:
        torch.set_num_threads(previous)


def _timed_epoch(spec: SweepSpec, config: dict[str, Any], data: Any, *, max_epochs: int, threads: int,
                 use_gpu: bool, max_batches: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    task, ctx, _ = start_trial(spec.task, config, data, seed=0, max_epochs=max_epochs, threads=threads,
                               device=pick_device(use_gpu), context=CalibrationContext, max_batches=max_batches)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    task.train_epoch(0)
    train_s = time.perf_counter() - t0 + ctx.take()
    t0 = time.perf_counter()
    task.evaluate("val")
    val_s = time.perf_counter() - t0 + ctx.take()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_state(Path(tmp) / "state.pt", task, 0, None, ctx.generator)
        ckpt_s = time.perf_counter() - t0
    return {"config": config, "build_s": build_s, "train_s": train_s, "val_s": val_s, "checkpoint_s": ckpt_s,
            "epoch_s": train_s + val_s + ckpt_s}


# --- the command --------------------------------------------------------------------------------


def concurrency_for(opts) -> int:
    """Trials at a time, as ``check_resources`` will find it on this machine."""
    import os

    cpus = opts.cpus if opts.cpus is not None else os.cpu_count() or 1
    if opts.cpus_per_trial <= 0:
        raise SpaceError("--cpus-per-trial must be > 0")
    c = int(cpus // opts.cpus_per_trial)
    if opts.gpus_per_trial > 0:
        gpus = opts.gpus if opts.gpus is not None else torch.cuda.device_count()
        c = min(c, int(gpus // opts.gpus_per_trial + 1e-9))
    if c < 1:
        raise ResourceError(f"a trial needs {opts.cpus_per_trial:g} CPU / {opts.gpus_per_trial:g} GPU, more than given")
    return c


def plan_sweep(opts, *, vary: list[str] | None = None, max_corners: int = 4, calibration_batches: int = 20,
               echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Calibrate, simulate, print; write ``plan.json`` into the experiment folder when named."""
    if opts.name:
        check_name(opts.name)
    spec = prepare_spec(opts)
    concurrency = concurrency_for(opts)
    varied = size_params(spec, vary)
    configs = corners(spec, varied, max_corners)
    t0 = time.perf_counter()
    data = load_data(spec, opts)
    load_s = time.perf_counter() - t0
    echo(f"{spec.task}: data loaded in {load_s:.1f}s; timing {len(configs)} corner(s) of "
         f"{', '.join(varied) or 'the space (no size-like parameter searched)'}, "
         f"{calibration_batches} batches per loop")
    timing = dict(max_epochs=spec.max_epochs, threads=default_threads(opts.cpus_per_trial),
                  use_gpu=opts.gpus_per_trial > 0)
    calibrate(spec, configs[0], data, max_batches=2, **timing)  # warm-up: first touch of data and kernels
    measured = []
    for cfg in configs:
        m = calibrate(spec, cfg, data, max_batches=calibration_batches, **timing)
        measured.append(m)
        echo(f"  {_corner_label(cfg, varied):40} {m['epoch_s']:7.2f} s/epoch  (train {m['train_s']:.2f}, "
             f"val {m['val_s']:.2f}, checkpoint {m['checkpoint_s']:.2f}, build {m['build_s']:.2f})")
    times = [m["epoch_s"] for m in measured]
    est = estimate(times, num_samples=spec.num_samples, max_epochs=spec.max_epochs, concurrency=concurrency,
                   scheduler=opts.scheduler, grace_period=spec.grace_period,
                   reduction_factor=spec.reduction_factor, start_s=float(np.mean([m["build_s"] for m in measured])),
                   budget_s=spec.time_budget_s)
    test_s = float(np.mean([m["val_s"] for m in measured]))  # the one test pass: about a validation pass
    est.update(epoch_s_mean=float(np.mean(times)), data_load_s=load_s, test_eval_s=test_s,
               wall_s=load_s + est["trial_s"] + test_s, wall_s_p10=load_s + est["trial_s_p10"] + test_s,
               wall_s_p90=load_s + est["trial_s_p90"] + test_s)
    plan = {
        "created": dt.datetime.now().isoformat(timespec="seconds"), "task": spec.task,
        "scheduler": opts.scheduler, "num_samples": spec.num_samples, "max_epochs": spec.max_epochs,
        "grace_period": spec.grace_period, "reduction_factor": spec.reduction_factor,
        "rungs": rungs(spec.max_epochs, spec.grace_period, spec.reduction_factor) if opts.scheduler == "asha" else [],
        "time_budget_s": spec.time_budget_s, "concurrency": concurrency, "cpus_per_trial": opts.cpus_per_trial,
        "gpus_per_trial": opts.gpus_per_trial, "limit": opts.limit, "calibration_batches": calibration_batches,
        "varied": varied, "corners": measured, "estimate": est,
        "not_counted": ["Ray start-up", "searcher time", "slow-down when concurrent trials share cores"],
        "assumes": "trial quality does not depend on when a trial starts (random search); Optuna learns, "
                   "so more of its later trials pass the rungs: expect the upper part of the range",
    }
    for line in plan_lines(plan):
        echo(line)
    if opts.name:
        path = write_plan(experiment_dir(opts.name, opts.storage), plan)
        echo(f"saved {path}; run the sweep with the same --name and --storage, and `dlb-tune report` "
             f"will set this estimate against the actual")
    return plan


def plan_lines(plan: dict[str, Any]) -> list[str]:
    e = plan["estimate"]
    sched = (f"ASHA (grace {plan['grace_period']}, reduction {plan['reduction_factor']}, rungs "
             f"{', '.join(map(str, plan['rungs']))})" if plan["scheduler"] == "asha" else "FIFO (no early stopping)")
    lines = [
        f"plan: {plan['num_samples']} trials x up to {plan['max_epochs']} epochs, {sched}, "
        f"{plan['concurrency']} trial(s) at a time",
        f"expected trial-epochs: {e['trial_epochs']:.0f} (10-90%: {e['trial_epochs_p10']:.0f}-{e['trial_epochs_p90']:.0f}; "
        f"without early stopping {plan['num_samples'] * plan['max_epochs']})",
        f"expected wall time: {_dur(e['wall_s'])} (10-90%: {_dur(e['wall_s_p10'])}-{_dur(e['wall_s_p90'])}), "
        f"of which data loading {_dur(e['data_load_s'])}; not counted: {', '.join(plan['not_counted'])}",
        f"assumes {plan['assumes']}",
    ]
    budget = plan.get("time_budget_s")
    if budget:
        binding = e["trial_s_p90"] >= budget * 0.98
        lines.append(f"time budget {_dur(budget)}: {'binding, the sweep will stop early' if binding else 'not binding'}")
    return lines


def _corner_label(cfg: dict[str, Any], varied: list[str]) -> str:
    return " ".join(f"{k}={cfg[k]:.3g}" if isinstance(cfg[k], float) else f"{k}={cfg[k]}" for k in varied) or "mid-range config"


def _dur(s: float) -> str:
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f} min"
