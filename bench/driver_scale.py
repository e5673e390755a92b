"""The Tune driver at cluster scale, simulated: the fcn table replayed by N concurrent trials.

Each trial is ``tables.replay_trainable``: it sleeps each recorded epoch's seconds times
``--scale`` and reports the recorded value, so it needs a sliver of a CPU and N = 8, 32 or 64
of them fit on this 2-core machine. The searcher and scheduler are the product's own (Optuna
with the PRUNED fix, ASHA; ``dlb_tune.make_searcher``/``make_scheduler``), with
``max_concurrent_trials=N`` and ``reuse_actors``, as ``dlb-tune sweep`` builds them. What stays
real is everything the driver does per trial and per result; what is simulated is the training.

Measured per N (one fresh local Ray each, under ``flock /work/notes/ray.lock``):

* controller throughput: results handled per second (whole fit, and the busiest half);
* scheduling latency per trial: created (the searcher's ``suggest``) -> started -> first result,
  and the gap between one trial's end and the next trial's start on a freed slot;
* the driver process's CPU (psutil, the sampler's own thread subtracted) and the summed PSS of
  the whole process tree (driver, GCS, raylet, dashboard, workers), sampled each second;
* where the driver's time goes: seconds inside the searcher and the scheduler;
* wall against simulated time: the ideal wall is the replayed trials' makespan on N slots.

Beside each run, the wall-time model of ``bench/scaling.py`` predicts it from the same trial
durations, as it stood (no driver limit) and corrected (``DriverCost``, fitted here).

    python -m bench driver-scale [--workers 8,32,64] [--trials 1000] [--table PATH] [--scale 0.25]
    python -m bench driver-scale --render      # figure + markdown from the saved JSON only

Results accumulate in ``bench/results/driver_scale.json`` (one row per table, search and N; a
rerun replaces its row), rendered to ``driver_scale.md`` and ``driver_scale.png``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bench.cli import benchmark
from bench.common import RESULTS, load_json, loadavg, machine, memory_kib, process_tree, save_json, say, scratch_dir
from bench.tables import TABLES, grid_points, read_table, replay_trainable, write_table

OUT = RESULTS / "driver_scale.json"
BUDGET_S = 150.0  # seconds of replay after the first trial starts (its workers took 2 min to start at load 15)
FIT_CAP_S = 330.0  # the whole fit, start-up included: a run holds the shared Ray lock under ~6 minutes
SCALE = 0.25  # an epoch of ~1 s sleeps 0.25 s: 8 workers stay under the driver's limit, 64 do not
# The synthetic stand-in for the recorded fcn table: the space's params at a few values each.
SYNTHETIC_GRID = {"activation": ["sigmoid", "tanh", "relu"], "hidden_size": [128, 256, 512], "num_layers": [1, 2],
                  "lr": [0.01, 0.03, 0.1, 0.3], "momentum": [0.0, 0.9], "batch_size": [32, 64, 128]}


# --- the table --------------------------------------------------------------------------------


def synthetic_table(path: Path, epochs: int = 16, seed: int = 0) -> Path:
    """A table of the fcn grid's shape with plausible curves and epoch seconds (~0.4-3 s: a
    full-MNIST epoch on one core grows with width and depth, and with smaller batches)."""
    import random

    rng, rows = random.Random(seed), []
    for i, p in enumerate(grid_points(SYNTHETIC_GRID)):
        top = 0.985 - 0.02 * abs(math.log10(p["lr"] / 0.1)) - (0.01 if p["activation"] == "sigmoid" else 0.0)
        tau = 1.0 + 3.0 * rng.random()
        base_s = 0.7 * (p["hidden_size"] / 256) ** 0.6 * p["num_layers"] ** 0.7 * (128 / p["batch_size"]) ** 0.5
        for epoch in range(1, epochs + 1):
            acc = top - (top - 0.1) * math.exp(-epoch / tau) + rng.gauss(0, 0.002)
            rows.append({"point": i, "epoch": epoch, **p, "val_acc": acc, "epoch_s": base_s * rng.uniform(0.95, 1.1)})
    meta = {"task": "fcn", "metric": "val_acc", "mode": "max", "max_epochs": epochs, "grid": SYNTHETIC_GRID,
            "log": ["lr"], "fixed": {}, "clock": "synthetic", "seed": seed, "limit": None}
    return write_table(path, rows, meta)


def resolve_table(arg: str | None, scratch: Path) -> tuple[Path, str]:
    """``--table``, else the recorded ``bench/tables/fcn.parquet``, else a synthetic one."""
    if arg:
        return Path(arg), read_table(arg).meta.get("clock", "recorded")
    recorded = TABLES / "fcn.parquet"
    if recorded.exists():
        return recorded, read_table(recorded).meta.get("clock", "recorded")
    return synthetic_table(scratch / "fcn_synthetic.parquet"), "synthetic"


# --- the probes -------------------------------------------------------------------------------


def timed(obj: Any, names: tuple[str, ...], bucket: dict[str, float], after: dict[str, Any] | None = None) -> None:
    """Make ``obj``'s methods ``names`` add their seconds to ``bucket[name]``, then call
    ``after[name](args, out)`` if given. Done on a subclass, so ``obj.__dict__`` stays as it was:
    Tune pickles the searcher's ``__dict__`` into its experiment state."""
    after = after or {}

    def wrap(name: str):
        inner = getattr(type(obj), name)

        def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            out = inner(self, *args, **kwargs)
            bucket[name] = bucket.get(name, 0.0) + time.perf_counter() - t
            if name in after:
                after[name](args, out)
            return out

        return wrapper

    obj.__class__ = type(type(obj).__name__, (type(obj),), {name: wrap(name) for name in names})


def make_probe():
    from ray import tune

    class DriverProbe(tune.Callback):
        """Driver-side timestamps (seconds since ``t0``) of every trial's creation, start, results
        and end, and the controller's step count."""

        def __init__(self):
            self.t0 = time.perf_counter()
            self.created: dict[str, float] = {}
            self.started: dict[str, float] = {}
            self.ended: dict[str, float] = {}
            self.results: list[tuple[float, str, int, float]] = []  # (t, trial, epoch, sim_s)
            self.steps = 0

        def now(self) -> float:
            return time.perf_counter() - self.t0

        def suggested(self, args, config) -> None:
            if isinstance(config, dict):  # None: no trial now; "FINISHED": none ever again
                self.created.setdefault(args[0], self.now())

        def on_step_end(self, iteration, trials, **info):
            self.steps += 1

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started.setdefault(trial.trial_id, self.now())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.results.append((self.now(), trial.trial_id, int(result.get("epoch", 0)), float(result.get("sim_s", 0))))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended[trial.trial_id] = self.now()

        on_trial_error = on_trial_complete

        def stopper(self, budget_s: float):
            """Ends the fit ``budget_s`` after the first trial started: worker start-up on a loaded
            machine must not eat the replay's time."""
            probe = self

            class AfterFirstStart(tune.Stopper):
                def __call__(self, trial_id, result) -> bool:
                    return False

                def stop_all(self) -> bool:
                    return bool(probe.started) and probe.now() - min(probe.started.values()) > budget_s

            return AfterFirstStart()

    return DriverProbe()


class Sampler:
    """Each ``interval_s``: the driver's CPU seconds (without this thread's own) and the summed
    PSS of its process tree (Ray's GCS, raylet and workers are its descendants)."""

    def __init__(self, interval_s: float = 1.0):
        import psutil

        self.proc, self.interval = psutil.Process(), interval_s
        self.samples: list[dict[str, float]] = []
        self._own = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system - self._own

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            own = time.thread_time()
            pids = process_tree(os.getpid())
            pss_mib = sum(memory_kib(p)[1] for p in pids) / 1024
            self._own += time.thread_time() - own
            self.samples.append({"t": time.perf_counter() - t0, "cpu_s": self._cpu(), "pss_mib": pss_mib,
                                 "procs": len(pids)})
            self._stop.wait(self.interval)


# --- one run ----------------------------------------------------------------------------------


def run_one(table_path: Path, workers: int, trials: int, scale: float, search: str, scratch: Path,
            budget_s: float = BUDGET_S) -> dict[str, Any]:
    """The table replayed by ``trials`` trials, ``workers`` at a time, on a fresh local Ray;
    ``budget_s`` after the first trial started, Tune stops whatever still runs."""
    import ray
    from ray import tune

    from dlb_tune import SweepOptions, make_scheduler, make_searcher, prepare_spec

    table = read_table(table_path)
    cores = os.cpu_count() or 1
    cpu = math.floor(cores / workers * 1e4) / 1e4  # Ray counts CPU in 1e-4 units: N of them must fit
    opts = SweepOptions(task="fcn", cpus=cores, cpus_per_trial=cpu, sampler="random" if search == "random" else None, scheduler="asha",
                        storage=str(scratch), name=f"driver-{search}-{workers}", num_samples=trials,
                        max_epochs=table.max_epochs, seed=0)
    spec = prepare_spec(opts)
    start_ray_patiently(cores)
    try:
        probe, spent, sched = make_probe(), {}, {}
        searcher, scheduler = make_searcher(spec, opts, workers, echo=say), make_scheduler(spec, opts)
        timed(searcher, ("suggest", "on_trial_result", "on_trial_complete"), spent, after={"suggest": probe.suggested})
        timed(scheduler, ("on_trial_result",), sched)
        trainable = tune.with_resources(tune.with_parameters(replay_trainable, table=table, scale=scale), {"cpu": cpu})
        tuner = tune.Tuner(trainable, param_space=spec.param_space(),
                           tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=trials,
                                                       max_concurrent_trials=workers, reuse_actors=True,
                                                       time_budget_s=FIT_CAP_S),
                           run_config=tune.RunConfig(name=opts.name, storage_path=str(scratch), callbacks=[probe],
                                                     stop=probe.stopper(budget_s), verbose=0))
        load = loadavg()
        with Sampler() as sampler:
            probe.t0 = t = time.perf_counter()
            tuner.fit()
            fit_s = time.perf_counter() - t
    finally:
        ray.shutdown()
    row = summarize(probe, sampler.samples, fit_s, workers, scale, table)
    row.update(search=search, scale=scale, trials=trials, budget_s=budget_s, cpu_per_trial=cpu, loadavg_start=load,
               loadavg_end=loadavg(), searcher_s={k: round(v, 2) for k, v in spent.items()},
               scheduler_s=round(sched.get("on_trial_result", 0.0), 2))
    return row


def start_ray_patiently(cpus: int, tries: int = 3) -> None:
    """A local Ray as ``dlb_tune.start_ray`` starts it (loopback only, token auth), without
    the dashboard, and again if a start-up timed out: on this shared machine, at load averages
    near 20, the raylet or dashboard misses Ray's fixed 30 s window."""
    import logging

    import ray

    from dlb_tune import loopback_only, quiet_libraries

    loopback_only()
    quiet_libraries()
    for attempt in range(1, tries + 1):
        try:
            ray.init(address="local", num_cpus=cpus, num_gpus=0, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=True)
            return
        except Exception as e:  # noqa: BLE001 - Ray raises bare Exceptions for start-up timeouts
            if attempt == tries:
                raise
            say(f"driver-scale: Ray did not start (load {loadavg()}): {str(e).strip().splitlines()[0][:100]}; again")
            ray.shutdown()


# --- the figures from the events -------------------------------------------------------------


def durations(probe, scale: float) -> tuple[list[float], list[int]]:
    """Each trial's simulated duration (its replayed epochs' sleeps) and its epochs, in creation order."""
    last: dict[str, tuple[float, int]] = {}
    for _, trial, epoch, sim in probe.results:
        last[trial] = max(last.get(trial, (0.0, 0)), (sim, epoch))
    order = sorted(probe.created, key=probe.created.get)
    return [last.get(t, (0.0, 0))[0] * scale for t in order], [last.get(t, (0.0, 0))[1] for t in order]


def slot_gaps(probe, workers: int) -> list[float]:
    """A freed slot's idle time: the k-th trial end to the (workers + k)-th trial start."""
    ends, starts = sorted(probe.ended.values()), sorted(probe.started.values())
    return [s - e for e, s in zip(ends, starts[workers:])]


def result_overheads(probe, scale: float) -> list[float]:
    """Per result after a trial's first: the driver-seen interval minus the epoch's sleep, i.e.
    what a report's round trip (worker -> driver -> worker) adds to an epoch."""
    last: dict[str, tuple[float, float]] = {}
    out = []
    for t, trial, _, sim in probe.results:
        if trial in last:
            out.append((t - last[trial][0]) - (sim - last[trial][1]) * scale)
        last[trial] = (t, sim)
    return out


def busiest_rate(times: list[float]) -> float | None:
    """Results per second over the middle half of the run (no ramp-up, no tail)."""
    if len(times) < 8:
        return None
    times = sorted(times)
    a, b = times[len(times) // 4], times[3 * len(times) // 4]
    return (len(times) // 2) / (b - a) if b > a else None


def summarize(probe, samples, fit_s: float, workers: int, scale: float, table) -> dict[str, Any]:
    from bench.scaling import makespan

    first: dict[str, float] = {}
    for t, trial, _, _ in probe.results:
        first.setdefault(trial, t)
    latency = [first[t] - c for t, c in probe.created.items() if t in first]
    to_start = [probe.started[t] - c for t, c in probe.created.items() if t in probe.started]
    d, epochs = durations(probe, scale)
    cpu_s = samples[-1]["cpu_s"] - samples[0]["cpu_s"] if len(samples) > 1 else None
    span = samples[-1]["t"] - samples[0]["t"] if len(samples) > 1 else None
    head = min(probe.started.values()) if probe.started else None
    return {
        "workers": workers, "fit_s": round(fit_s, 2), "results": len(probe.results), "trials_run": len(first),
        "steps": probe.steps,
        "throughput_per_s": round(len(probe.results) / fit_s, 2),
        "throughput_busiest_per_s": busiest_rate([t for t, *_ in probe.results]),
        "latency_s": quantiles(latency), "create_to_start_s": quantiles(to_start),
        "slot_gap_s": quantiles(slot_gaps(probe, workers)),
        "result_overhead_s": quantiles(result_overheads(probe, scale)),
        "head_s": head, "tail_s": fit_s - max(probe.ended.values()) if probe.ended else None,
        "driver_cpu_s": cpu_s, "driver_cpu_frac": cpu_s / span if cpu_s is not None and span else None,
        "peak_tree_pss_mib": max((s["pss_mib"] for s in samples), default=None),
        "peak_processes": max((s["procs"] for s in samples), default=None),
        "sim_s": round(sum(d) / scale, 1), "trial_s": d, "trial_epochs": epochs,
        "ideal_wall_s": round(makespan(d, workers), 2),
    }


def quantiles(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    xs = sorted(xs)
    return {"p50": xs[len(xs) // 2], "p90": xs[int(0.9 * (len(xs) - 1))], "max": xs[-1], "n": len(xs)}


# --- main -------------------------------------------------------------------------------------


def merge(rows: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    key = lambda r: (r["table_kind"], r["search"], r["workers"])  # noqa: E731 - one use
    return sorted([r for r in rows if key(r) != key(new)] + [new], key=key)


class Search(str, Enum):
    optuna = "optuna"
    random = "random"


@benchmark("driver-scale")
def driver_scale(
    workers: Annotated[str, typer.Option(
        help="Concurrent simulated workers, comma-separated (64 needs ~10 GiB).")] = "8,32",
    trials: Annotated[int, typer.Option(help="Trials per run.")] = 1000,
    table: Annotated[Optional[str], typer.Option(
        help="A table (default: bench/tables/fcn.parquet, else a synthetic one).")] = None,
    scale: Annotated[float, typer.Option(help="Sleep = recorded epoch seconds x this.")] = SCALE,
    budget_s: Annotated[float, typer.Option(
        help="Stop the replay this many seconds after its first trial started.")] = BUDGET_S,
    search: Annotated[Search, typer.Option(help="The searcher, as dlb-tune builds it.")] = Search.optuna,
    render_only: Annotated[bool, typer.Option(
        "--render", help="Only re-render the figure and table from the JSON.")] = False,
) -> None:
    """The Tune driver with 8-64 simulated workers (a table replayed) -> bench/results/driver_scale.json."""
    for n in () if render_only else (int(w) for w in workers.split(",")):
        with scratch_dir("driver") as tmp:
            path, kind = resolve_table(table, tmp)
            say(f"driver-scale: {n} workers, {trials} trials, {kind} table {path.name}, scale {scale}")
            row = run_one(path, n, trials, scale, search.value, tmp, budget_s)
        row.update(table_kind=kind, table=str(path.name), date=time.strftime("%Y-%m-%dT%H:%M:%S"))
        saved = load_json(OUT) or {"rows": []}
        saved.update(machine=machine(), rows=merge(saved["rows"], row))
        save_json(OUT, saved)
        say(f"driver-scale: {n} workers: fit {row['fit_s']}s (ideal {row['ideal_wall_s']}s), "
            f"{row['throughput_per_s']} results/s, driver CPU {row['driver_cpu_frac']}")
    from bench.driver_report import render

    render(load_json(OUT))
