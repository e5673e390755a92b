"""Figure 1, sweep efficiency: the same fixed FCN configs, fixed epochs, no early stopping,

(a) as a bare sequential loop in one process (one torch thread, as each trial gets), and
(b) through dlb-tune's sweep machinery on ``cpus`` CPUs (its own Tuner: random search over a
    grid, FIFO, checkpoints every epoch, ``reuse_actors``),
(c) and, as the other plain alternative, the bare loop with all ``cpus`` torch threads.

Reports ``sweep wall / (bare wall / cpus)`` (1.0: perfect packing, zero overhead), per-trial
start-up and per-epoch overheads, and the peak memory (PSS) of each leg's whole process tree.
Every leg runs in a fresh process, so one leg's allocations stay out of the next one's numbers.

    python -m bench sweep-efficiency [--quick]
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cli import DataDir, Quick, figure
from bench.common import load_json, median, ratio, run_leg, save_json, say, scratch_dir
from bench.table import table, table_note

GRID = {  # 3 x 2 x 2 = 12 configs, from cheap (128 units, batch 128) to 3x the work
    "activation": ["relu", "tanh", "sigmoid"],
    "hidden_size": [128, 256],
    "batch_size": [64, 128],
}
CONSTANTS = {"num_layers": 1, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "lr_schedule": "cosine"}


@dataclass
class Settings:
    epochs: int  # per config, all run to the end
    limit: int | None  # examples per split (None: all 55,000 training images)
    cpus: int = 2  # the sweep's CPUs, one per trial; the ideal is bare wall / cpus


QUICK = Settings(epochs=3, limit=20_000)
THREADS_LEG_CAP = 4  # the all-threads leg may take this many times the 1-thread leg's process wall
FULL = Settings(epochs=4, limit=None)


def fixed_space(epochs: int, grid: dict[str, list] = GRID) -> dict[str, Any]:
    """A search-space file whose params are all constants; the grid replaces the varied ones."""
    params = {**CONSTANTS, **{k: v[0] for k, v in grid.items()}}
    return {"task": "fcn", "metric": "val_acc", "mode": "max", "max_epochs": epochs, "num_samples": 1,
            "params": params}


def configs(grid: dict[str, list] = GRID) -> list[dict[str, Any]]:
    keys = list(grid)
    return [{**CONSTANTS, **dict(zip(keys, values))} for values in itertools.product(*grid.values())]


def grid_param_space(spec, grid: dict[str, list] = GRID) -> dict[str, Any]:
    from ray import tune

    return {**spec.param_space(), **{k: tune.grid_search(v) for k, v in grid.items()}}


def write_space(path: Path, epochs: int, grid: dict[str, list] = GRID) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(fixed_space(epochs, grid), sort_keys=False))
    return path


def sweep_options(space: Path, data_dir: str, limit: int | None, cpus: int, storage: Path, name: str,
                  address: str | None = None):
    from dlb_tune import SweepOptions

    return SweepOptions(task="fcn", data_dir=data_dir, space=str(space), cpus=cpus, sampler="random",
                        scheduler="fifo", limit=limit, storage=str(storage), name=name, seed=0,
                        address=address)


# --- the legs, each in its own process ----------------------------------------------------------


def leg_options(args: dict[str, Any], name: str):
    return sweep_options(Path(args["space"]), args["data_dir"], args["limit"], args["cpus"], Path(args["storage"]),
                         name)


def leg_bare(args: dict[str, Any]) -> dict[str, Any]:
    """The plain loop: build each config's task, train and validate every epoch, nothing else."""
    import torch

    from dlb_tune import TrialContext, build_task, load_data, prepare_spec, trial_seed

    torch.set_num_threads(args["threads"])
    opts = leg_options(args, "bare")
    spec = prepare_spec(opts)
    t = time.perf_counter()
    data = load_data(spec, opts)
    load_s = time.perf_counter() - t
    setups, epochs, t_all = [], [], time.perf_counter()
    for i, cfg in enumerate(configs()):
        t = time.perf_counter()
        ctx = TrialContext(max_epochs=spec.max_epochs, seed=trial_seed(0, f"bare-{i}"))
        torch.manual_seed(ctx.seed)
        task = build_task("fcn", cfg, data, ctx)
        setups.append(time.perf_counter() - t)
        for epoch in range(spec.max_epochs):
            t = time.perf_counter()
            task.train_epoch(epoch)
            task.evaluate("val")
            epochs.append(time.perf_counter() - t)
    return {"threads": args["threads"], "data_load_s": load_s, "wall_s": time.perf_counter() - t_all,
            "configs": len(setups), "setup_s_median": median(setups), "compute_s_total": sum(epochs),
            "epoch_s_median": median(epochs)}


def leg_sweep(args: dict[str, Any]) -> dict[str, Any]:
    """The same configs through sweep_tuner: Ray start, fit and shutdown timed separately."""
    import ray

    from bench.probes import TrialClock, attach, overheads, timeline
    from dlb_tune import sweep_tuner, check_resources, load_data, prepare_spec, start_ray

    opts = leg_options(args, "sweep")
    spec = prepare_spec(opts)
    t = time.perf_counter()
    data = load_data(spec, opts)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    start_ray(opts)
    ray_start_s = time.perf_counter() - t
    try:
        concurrency, per_trial = check_resources(opts)
        clock = TrialClock(spec.metric, spec.mode)
        tuner = sweep_tuner(spec, opts, data, concurrency, per_trial, echo=lambda line: None)
        attach(tuner, callbacks=[clock], param_space=grid_param_space(spec))
        clock.restart()
        t = time.perf_counter()
        grid = tuner.fit()
        fit_s = time.perf_counter() - t
    finally:
        t = time.perf_counter()
        ray.shutdown()
        shutdown_s = time.perf_counter() - t
    errors = [str(r.error).splitlines()[-1] for r in grid if r.error is not None]
    return {"data_load_s": load_s, "ray_start_s": ray_start_s, "fit_s": fit_s, "shutdown_s": shutdown_s,
            "concurrency": concurrency, "trials": len(grid), "errors": errors, "overheads": overheads(clock),
            "timeline": timeline(clock)}


# --- the figure -------------------------------------------------------------------------------


def render(rec: dict[str, Any]) -> list[str]:
    h, s, legs = rec["headline"], rec["settings"], rec["legs"]
    cpus = s["cpus"]
    rows = [
        ["bare loop, 1 torch thread", h["bare_wall_s"], legs.get("bare_1_thread", {}).get("memory", {}).get("peak_pss_mib"),
         legs.get("bare_1_thread", {}).get("memory", {}).get("peak_processes")],
        [f"ideal: bare / {cpus} CPUs", h["ideal_wall_s"], None, None],
        [f"dlb-tune sweep on {cpus} CPUs (fit)", h["sweep_fit_s"], legs.get("sweep", {}).get("memory", {}).get("peak_pss_mib"),
         legs.get("sweep", {}).get("memory", {}).get("peak_processes")],
        ["  + Ray start-up (once per sweep)", h["ray_start_s"], None, None],
        [f"bare loop, {cpus} torch threads", h["bare_all_threads_wall_s"] if not h.get("bare_all_threads_timed_out")
         else f"> {legs[f'bare_{cpus}_threads']['process_wall_s']:.0f} (stopped)",
         legs.get(f"bare_{cpus}_threads", {}).get("memory", {}).get("peak_pss_mib"),
         legs.get(f"bare_{cpus}_threads", {}).get("memory", {}).get("peak_processes")],
    ]
    lines = [f"{s['configs']} fixed FCN configs x {s['epochs']} epochs, no early stopping, "
             f"{'all' if s['limit'] is None else s['limit']} examples per split.", ""]
    lines += table(["leg", "wall (s)", "peak memory, whole process tree (PSS MiB)", "processes"], rows)
    lines += ["", table_note([
        ("sweep / ideal (1.0 = perfect packing, no overhead)", h["sweep_over_ideal"]),
        ("sweep incl. Ray start-up / ideal", h["sweep_over_ideal_with_ray_start"]),
        (f"sweep / bare loop with {cpus} threads", h["sweep_over_bare_all_threads"]),
        ("epoch time in the sweep / in the bare loop (core contention)", h["epoch_slowdown_in_sweep"]),
        ("per-trial start-up in the sweep, median (s)", h["trial_startup_s_median"]),
        ("per-config set-up in the bare loop, median (s)", h["bare_setup_s_median"]),
        ("per-epoch report + checkpoint overhead, median (s)", h["per_epoch_overhead_s_median"]),
        ("Tune set-up before the first trial starts (s)", h.get("fit_until_first_trial_s")),
        ("Tune wind-down after the last trial ends (s)", h.get("fit_after_last_trial_s")),
    ])]
    if h.get("errors"):
        lines.append(f"\nErrors: {h['errors']}")
    return lines


@figure(1, "sweep-efficiency", "Sweep efficiency", render)
def measure(quick: Quick = False, data_dir: DataDir = None) -> dict[str, Any]:
    """Fixed FCN configs: a bare loop against dlb-tune's sweep on 2 CPUs."""
    s = QUICK if quick else FULL
    timeout = 900 if quick else 3600
    legs: dict[str, Any] = {}
    with scratch_dir("fig1") as tmp:
        space = write_space(tmp / "fixed.yaml", s.epochs)
        common = {"space": str(space), "data_dir": data_dir, "cpus": s.cpus, "storage": str(tmp / "runs"),
                  "limit": s.limit, "threads": 1}
        plan = [("bare_1_thread", {"leg": "bare"}), ("sweep", {"leg": "sweep"}),
                (f"bare_{s.cpus}_threads", {"leg": "bare", "threads": s.cpus})]
        for name, extra in plan:
            say(f"figure 1: leg {name} ({len(configs())} configs x {s.epochs} epochs)")
            if name.endswith("_threads"):
                # Intra-op threads collapse when other work shares the cores (OpenMP threads
                # wait for each other): cap this leg so a busy machine cannot stall the suite.
                bare = legs["bare_1_thread"].get("process_wall_s") or timeout
                timeout = min(timeout, max(120.0, THREADS_LEG_CAP * bare))
            legs[name] = run_leg("bench.sweep_efficiency", {**common, **extra}, tmp / f"{name}.json", timeout)
            say(f"figure 1: leg {name}: {_leg_line(legs[name])}")
    return {"settings": {**asdict(s), "configs": len(configs()), "grid": GRID, "constants": CONSTANTS},
            "legs": legs, "headline": headline(legs, s.cpus)}


def headline(legs: dict[str, Any], cpus: int) -> dict[str, Any]:
    bare, sweep, bare_all = legs.get("bare_1_thread", {}), legs.get("sweep", {}), legs.get(f"bare_{cpus}_threads", {})
    ideal = ratio(bare.get("wall_s"), cpus)
    fit, start = sweep.get("fit_s"), sweep.get("ray_start_s")
    ov = sweep.get("overheads") or {}
    return {
        "bare_wall_s": bare.get("wall_s"),
        "ideal_wall_s": ideal,
        "sweep_fit_s": fit,
        "ray_start_s": start,
        "sweep_over_ideal": ratio(fit, ideal),
        "sweep_over_ideal_with_ray_start": ratio((fit or 0) + (start or 0), ideal) if fit else None,
        "bare_all_threads_wall_s": bare_all.get("wall_s"),
        "bare_all_threads_timed_out": bare_all.get("timed_out", False),
        "sweep_over_bare_all_threads": ratio(fit, bare_all.get("wall_s")),
        "epoch_slowdown_in_sweep": ratio(ov.get("compute_s_total"), bare.get("compute_s_total")),
        "trial_startup_s_median": (ov.get("startup_s") or {}).get("median"),
        "bare_setup_s_median": bare.get("setup_s_median"),
        "per_epoch_overhead_s_median": (ov.get("per_epoch_overhead_s") or {}).get("median"),
        "fit_until_first_trial_s": ov.get("first_trial_start_s"),
        "fit_after_last_trial_s": fit - ov["last_trial_end_s"] if fit and ov.get("last_trial_end_s") else None,
        "peak_pss_mib": {k: (v.get("memory") or {}).get("peak_pss_mib") for k, v in legs.items()},
        "peak_processes": {k: (v.get("memory") or {}).get("peak_processes") for k, v in legs.items()},
        "errors": {k: v["error"] for k, v in legs.items() if "error" in v} or None,
    }


def _leg_line(leg: dict[str, Any]) -> str:
    if "error" in leg:
        return f"ERROR {leg['error']}: {leg.get('log_tail', '')[-300:]}"
    wall = leg.get("wall_s", leg.get("fit_s"))
    return f"{wall:.1f}s, peak PSS {(leg.get('memory') or {}).get('peak_pss_mib')} MiB"


def _leg_main(settings: Path) -> None:
    """One leg, run by the figure in a fresh process: ``python -m bench.sweep_efficiency SETTINGS_JSON``."""
    args = load_json(settings)
    result = leg_bare(args) if args["leg"] == "bare" else leg_sweep(args)
    save_json(Path(args["out"]), result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}))


if __name__ == "__main__":
    _leg_main(Path(sys.argv[1]))
