"""Figure 5, scaling on paper: a short model of sweep wall time for N nodes / GPUs, built from
measured per-trial times and overheads, checked against a simulated local cluster.

Measured (a ``ray.cluster_utils.Cluster`` of 1-CPU nodes on this machine, nodes added one by one,
the same fixed FCN configs through dlb-tune's Tuner each time):

* on 1 node: every trial's wall (start to end), Tune's set-up before the first trial (H), its
  tear-down after the last (T), the gap between one trial's end and the next's start (g), and
  the start of a fresh trial process (A: spawn, import torch and dlb_tune);
* on 2 and 3 nodes: the fit wall, to compare with the model's prediction from the 1-node run;
* a data-parallel trial (``workers_per_trial=2``, Ray Train) on 3 nodes: its start-up and epoch.

The model: list-schedule the trials (in the order Tune started them) on ``slots`` parallel slots,

    wall(N) = H + makespan(d_i + g over N slots, slots 2..N opening A later) + T,

since the 1-node run's H holds the first trial process's start, and every further node must
start its own before it takes a trial. For the check, N simulated nodes share this machine's
cores: trials and process starts run ``max(1, N / cores)`` times slower. ASHA shortens the trials:
with n trials, grace period G, reduction factor eta and E epochs, about n(1 - 1/eta) stop at G,
n/eta (1 - 1/eta) at G eta, ... (synchronous successive halving; asynchronous ASHA promotes a
little more, since early trials are judged against fewer peers).

The model above knows no driver: each slot reports as often as it likes, a freed slot waits the
1-node gap g (9 ms) and a report costs the 1-node per-epoch overhead (16 ms). One Tune driver
handles every result and starts every trial, and ``bench/driver_scale.py`` measured what that
costs with 8 and 32 concurrent replayed trials on this 2-core machine at load averages 11-31
(synthetic fcn table, Optuna + ASHA, ``bench/results/driver_scale.json``): a report's round trip
0.11 s (not 0.016), a freed slot's wait for its next trial 0.27 s at N = 8 and 13 s at N = 32
(not 0.009), and at most 16 results per second (0.062 s each) at both N, with the driver process
itself at 8-17 % of a core, i.e. the bound is the report path through Ray on a saturated
machine, not the driver's Python. On the recorded fcn table (12 epochs of 0.54 s, each sleeping
0.135 s) the same driver handled at most 12 results per second (0.084 s each) at N = 8, with a
report's round trip 0.076 s and a freed slot's wait 2.3 s, and at N = 64 only 5.2 per second with
a 62 s slot wait and 87 s from a trial's creation to its first result (load average 70, the driver
at 7 % of a core): on 2 cores the N worker processes themselves take the CPU the report path needs,
so throughput falls as N grows. The constant ``c`` below is the best case, on a machine whose cores
the workers do not share (a cluster's head node) an upper bound on throughput. ``DriverCost``
carries these; with it

    wall(N) = H + max(makespan(d_i + E_i r + g' over N slots, ...), R c) + T

(r: extra round trip per epoch, g': the slot gap, R: results, c: seconds per result), so the
driver bound sets the wall once ``N > epoch_s / c`` (``DriverCost.saturation_slots``): on this
machine ~4 slots for 0.3 s epochs, ~12 for 1 s epochs. ``MEASURED_DRIVER`` holds the constants.

    python -m bench scaling [--quick]
"""

from __future__ import annotations

import heapq
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.cli import DataDir, Quick, figure
from bench.common import median, ratio, say, scratch_dir
from bench.sweep_efficiency import grid_param_space, sweep_options, write_space
from bench.table import fmt, table


@dataclass
class Settings:
    grid: dict[str, list]  # the fixed configs (a product)
    epochs: int
    limit: int | None  # examples per split
    nodes: tuple[int, ...] = (1, 2, 3)  # simulated 1-CPU nodes
    ddp_workers: int = 2  # the Ray Train check: one trial on this many workers


QUICK = Settings(grid={"activation": ["relu", "tanh", "sigmoid"], "hidden_size": [128, 256], "batch_size": [128]},
                 epochs=3, limit=20_000)  # trials of ~2 s: longer than a new node's process start
FULL = Settings(grid={"activation": ["relu", "tanh", "sigmoid"], "hidden_size": [128, 256], "batch_size": [64, 128]},
                epochs=3, limit=None)
DDP_GRID = {"activation": ["relu"], "hidden_size": [256], "batch_size": [128]}  # one data-parallel trial
EXTRAPOLATE = (1, 2, 4, 8, 16, 32)  # slots (GPUs, or 1-GPU nodes) in the paper model


def default_shape() -> dict[str, int]:
    """The default fcn sweep's shape (search_spaces/fcn.yaml): trials, epochs, ASHA's rungs."""
    from dlb_tune import default_space_file, load_space

    spec = load_space(default_space_file("fcn"))
    return {"n": spec.num_samples, "epochs": spec.max_epochs, "grace": spec.grace_period, "eta": spec.reduction_factor}


# --- the model --------------------------------------------------------------------------------


@dataclass
class DriverCost:
    """What one Tune driver adds when many slots share it (measured by bench/driver_scale.py):
    it handles results one at a time, ``per_result_s`` each (a trial's own driver work spread over
    its results); each report's round trip adds ``report_s`` to an epoch beyond the 1-node
    calibration's; a freed slot waits ``gap_s`` for its next trial (None: the calibration's g).
    The defaults reproduce the model without a driver."""

    per_result_s: float = 0.0
    report_s: float = 0.0
    gap_s: float | None = None

    def busy_s(self, results: int) -> float:
        return results * self.per_result_s

    def saturation_slots(self, epoch_s: float) -> float:
        """The N at which N slots, each reporting once per ``epoch_s``, keep the driver busy."""
        return epoch_s / self.per_result_s if self.per_result_s else math.inf


# bench/results/driver_scale.json, the recorded fcn table (the synthetic one's longer epochs gave
# 0.062, 0.09 and 0.27): 1 / the best 11.9 results/s (N = 8); N = 8's round trip 0.076 s minus
# the 1-node 0.016 s, and its slot gap
MEASURED_DRIVER = DriverCost(per_result_s=0.084, report_s=0.06, gap_s=2.3)


def bounded(span_s: float, results: int, driver: DriverCost | None) -> float:
    """The slots' makespan, or the driver's busy time if that is longer: the slower one sets the wall."""
    return max(span_s, driver.busy_s(results)) if driver else span_s


def makespan(durations: list[float], slots: int, gap: float = 0.0, late_start: float = 0.0) -> float:
    """Greedy list scheduling: each trial, in order, on the slot that frees first. Slots after the
    first open ``late_start`` seconds later (a new node must start its trial process first)."""
    free = [0.0] + [late_start] * (max(1, slots) - 1)
    heapq.heapify(free)
    end = 0.0
    for d in durations:
        done = heapq.heappop(free) + gap + d
        end = max(end, done)
        heapq.heappush(free, done)
    return end


def predict(calib: dict[str, Any], nodes: int, cores: int | None, driver: DriverCost | None = None) -> float:
    """Fit wall on ``nodes`` slots from a 1-node calibration run. ``cores`` caps real parallelism:
    N simulated nodes on fewer cores start their trial processes, and run their trials, slower.
    ``driver``: the wall is at least the driver's time for all results (one per trial epoch)."""
    slow = max(1.0, nodes / cores) if cores else 1.0
    extra = driver.report_s * calib["epochs"] if driver else 0.0
    durations = [d * slow + extra for d in calib["trial_walls"]]
    late = calib["actor_start_s"] * slow
    gap = driver.gap_s if driver and driver.gap_s is not None else calib["gap_s"]
    span = makespan(durations, nodes, gap, late)
    return calib["head_s"] + bounded(span, len(durations) * calib["epochs"], driver) + calib["tail_s"]


def asha_lengths(n: int, epochs: int, grace: int, eta: int) -> list[int]:
    """Epochs each of n trials runs under successive halving (rungs at grace * eta^k, then E)."""
    rungs, m = [], grace
    while m < epochs:
        rungs.append(m)
        m *= eta
    rungs.append(epochs)
    lengths, alive = [], n
    for k, rung in enumerate(rungs[:-1]):
        keep = max(1, round(n / eta ** (k + 1)))
        lengths += [rung] * (alive - keep)
        alive = keep
    return lengths + [epochs] * alive


def paper_model(calib: dict[str, Any], ddp: dict[str, Any] | None) -> dict[str, Any]:
    """Wall time for N slots: this workload, the default space's shape under FIFO and ASHA, and
    (if measured) the same workload with data-parallel trials."""
    e, s, o = calib["epoch_s"], calib["startup_s"], calib["per_epoch_overhead_s"]
    head, tail, gap, late = calib["head_s"], calib["tail_s"], calib["gap_s"], calib["actor_start_s"]
    shape = default_shape()
    fifo = [s + shape["epochs"] * (e + o)] * shape["n"]
    lengths = asha_lengths(shape["n"], shape["epochs"], shape["grace"], shape["eta"])
    asha = [s + L * (e + o) for L in lengths]
    rows = []
    for n in EXTRAPOLATE:
        row = {"slots": n,
               "this_workload_s": head + makespan(calib["trial_walls"], n, gap, late) + tail,
               "default_shape_fifo_s": head + makespan(fifo, n, gap, late) + tail,
               "default_shape_asha_s": head + makespan(sorted(asha, reverse=True), n, gap, late) + tail,
               "default_shape_asha_driver_s": head + with_driver(asha, lengths, n, late, MEASURED_DRIVER) + tail}
        if ddp and ddp.get("startup_s") is not None and ddp.get("epoch_s") is not None:
            w = ddp["workers"]
            trial = ddp["startup_s"] + calib["epochs"] * (ddp["epoch_s"] + o)
            row[f"this_workload_ddp{w}_s"] = head + makespan([trial] * len(calib["trial_walls"]), max(1, n // w), gap, late) + tail \
                if n >= w else None
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["this_workload_speedup"] = ratio(base["this_workload_s"], row["this_workload_s"])
        row["default_asha_speedup"] = ratio(base["default_shape_asha_s"], row["default_shape_asha_s"])
    return {"inputs": {"epoch_s": e, "startup_s": s, "per_epoch_overhead_s": o, "head_s": head, "tail_s": tail,
                       "actor_start_s": calib["actor_start_s"],
                       "gap_s": gap, "default_shape": shape,
                       "asha_lengths": asha_lengths(shape["n"], shape["epochs"], shape["grace"], shape["eta"])},
            "rows": rows}


def with_driver(durations: list[float], epochs: list[int], slots: int, late: float, driver: DriverCost) -> float:
    """The makespan of trials (longest first) with the driver's measured round trips, slot gap and bound."""
    trials = sorted((d + e * driver.report_s for d, e in zip(durations, epochs)), reverse=True)
    return bounded(makespan(trials, slots, driver.gap_s or 0.0, late), sum(epochs), driver)


# --- the measurements -------------------------------------------------------------------------


def run_grid(space, data_dir: str, limit: int | None, grid: dict[str, list], storage, name: str, address: str,
             workers: int = 1, timeout_s: float = 900) -> dict[str, Any]:
    """The fixed configs through sweep_tuner on the running cluster; the clock's view of it.
    ``timeout_s`` ends a run that cannot be scheduled (it is then reported, not waited for)."""
    from ray.tune.stopper import TimeoutStopper

    from bench.probes import TrialClock, attach, overheads, timeline
    from dlb_tune import sweep_tuner, check_resources, load_data, prepare_spec

    opts = sweep_options(space, data_dir, limit, cpus=None, storage=storage, name=name, address=address)
    opts.workers_per_trial = workers
    spec = prepare_spec(opts)
    data = load_data(spec, opts)
    concurrency, per_trial = check_resources(opts)
    clock = TrialClock(spec.metric, spec.mode)
    tuner = sweep_tuner(spec, opts, data, concurrency, per_trial, echo=lambda line: None)
    attach(tuner, callbacks=[clock], param_space=grid_param_space(spec, grid), stop=TimeoutStopper(timeout_s))
    clock.restart()
    t = time.perf_counter()
    results = tuner.fit()
    fit_s = time.perf_counter() - t
    errors = [str(r.error).strip().splitlines()[-1] for r in results if r.error is not None]
    if fit_s >= timeout_s:
        errors.append(f"stopped after {timeout_s:.0f}s: trials could not be scheduled or did not finish")
    return {"fit_s": fit_s, "concurrency": concurrency, "trials": len(results), "errors": errors,
            "overheads": overheads(clock), "timeline": timeline(clock), "clock": clock.per_trial()}


def actor_start_s() -> float:
    """Seconds to start a fresh 1-CPU Ray actor that imports what a trial imports."""
    import ray

    @ray.remote(num_cpus=1)
    class Probe:
        def ready(self) -> bool:
            import ray.tune  # noqa: F401 - Tune, torch and the task registry: what a trial imports

            from dlb_tune import start_trial  # noqa: F401

            return True

    t = time.perf_counter()
    probe = Probe.remote()
    ray.get(probe.ready.remote())
    took = time.perf_counter() - t
    ray.kill(probe)
    return took


def calibration(run: dict[str, Any], epochs: int, actor_s: float) -> dict[str, Any]:
    """The model's inputs from the 1-node run: trial walls in start order, H, T, g, actor start."""
    trials = sorted((r for r in run["clock"].values() if r["start"] is not None and r["end"] is not None),
                    key=lambda r: r["start"])
    walls = [r["end"] - r["start"] for r in trials]
    gaps = [b["start"] - a["end"] for a, b in zip(trials, trials[1:])]
    ov = run["overheads"]
    epoch_times = [es for r in trials for _, es, _ in r["results"]]
    return {"trial_walls": walls, "head_s": trials[0]["start"] if trials else 0.0,
            "tail_s": run["fit_s"] - trials[-1]["end"] if trials else 0.0,
            "gap_s": max(0.0, median(gaps) or 0.0), "epochs": epochs, "actor_start_s": actor_s, "epoch_s": median(epoch_times),
            "startup_s": (ov.get("startup_s") or {}).get("median") or 0.0,
            "per_epoch_overhead_s": (ov.get("per_epoch_overhead_s") or {}).get("median") or 0.0}


def ddp_summary(run: dict[str, Any], workers: int) -> dict[str, Any]:
    ov = run["overheads"]
    epoch_times = [es for r in run["clock"].values() for _, es, _ in r["results"]]
    return {"workers": workers, "fit_s": run["fit_s"], "errors": run["errors"],
            "startup_s": (ov.get("startup_s") or {}).get("median"), "epoch_s": median(epoch_times)}


def render(rec: dict[str, Any]) -> list[str]:
    s, cores = rec["settings"], rec["settings"]["cores"]
    lines = [f"Check: the same {_count(s['grid'])} FCN configs x {s['epochs']} epochs on a simulated cluster of "
             f"1-CPU nodes on this {cores}-core machine; the model is calibrated on the 1-node run.", ""]
    rows = [[c["nodes"], c["measured_fit_s"], c.get("model_real_nodes_s"), c.get(f"model_on_{cores}_cores_s"),
             c.get("model_error"), c.get("speedup_measured"), c.get("measured_until_first_trial_s"),
             "; ".join(c["errors"] or []) or "-"] for c in rec["check"]]
    lines += table(["nodes", "measured fit (s)", "model, real nodes (s)", f"model, {cores} shared cores (s)",
                    "model / measured", "speedup measured", "Tune set-up before 1st trial (s)", "errors"], rows)
    ddp = rec.get("ddp")
    if ddp:
        if "error" in ddp:
            lines.append(f"\nData-parallel trial: not measured ({ddp['error']})")
        else:
            lines.append(f"\nData-parallel trial ({ddp['workers']} Ray Train workers): start-up {fmt(ddp['startup_s'])} s, "
                         f"epoch {fmt(ddp['epoch_s'])} s; the same trial plain: start-up "
                         f"{fmt(ddp['plain_trial']['startup_s'])} s, epoch {fmt(ddp['plain_trial']['epoch_s'])} s."
                         + (f" Errors: {ddp['errors']}" if ddp.get("errors") else ""))
    model = rec.get("model")
    if model:
        inp = model["inputs"]
        shape = inp["default_shape"]
        lines += ["", f"Model (inputs measured above: epoch {fmt(inp['epoch_s'])} s, trial start-up "
                      f"{fmt(inp['startup_s'])} s, per-epoch overhead {fmt(inp['per_epoch_overhead_s'])} s, Tune set-up "
                      f"{fmt(inp['head_s'])} s, trial process start {fmt(inp.get('actor_start_s'))} s, wind-down {fmt(inp['tail_s'])} s, gap {fmt(inp['gap_s'])} s). "
                      f"Default shape: {shape['n']} trials x {shape['epochs']} epochs, ASHA grace {shape['grace']}, "
                      f"reduction {shape['eta']} (epochs per trial {inp['asha_lengths']}).", ""]
        ddp_key = next((k for k in model["rows"][0] if k.startswith("this_workload_ddp")), None)
        header = ["slots (GPUs)", "this workload (s)", "speedup", "default shape, FIFO (s)", "default shape, ASHA (s)",
                  "ASHA speedup"] + ([f"this workload, {ddp_key[len('this_workload_'):-2]} per trial (s)"] if ddp_key else [])
        rows = [[r["slots"], r["this_workload_s"], r["this_workload_speedup"], r["default_shape_fifo_s"],
                 r["default_shape_asha_s"], r["default_asha_speedup"]] + ([r.get(ddp_key)] if ddp_key else [])
                for r in model["rows"]]
        lines += table(header, rows)
    return lines


def _count(grid: dict[str, list]) -> int:
    n = 1
    for v in grid.values():
        n *= len(v)
    return n


@figure(5, "scaling", "Scaling on paper", render)
def measure(quick: Quick = False, data_dir: DataDir = None) -> dict[str, Any]:
    """A wall-time model for N slots, checked on a simulated 1-, 2-, 3-node cluster."""
    import logging

    import ray
    from ray.cluster_utils import Cluster

    from dlb_tune import quiet_libraries

    s = QUICK if quick else FULL
    cores = os.cpu_count() or 1
    runs: dict[int, dict[str, Any]] = {}
    node_start: dict[int, float] = {}
    ddp: dict[str, Any] | None = None
    with scratch_dir("fig5") as tmp:
        space = write_space(tmp / "fixed.yaml", s.epochs, s.grid)
        t = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        quiet_libraries()
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        node_start[1] = time.perf_counter() - t
        try:
            actor_s = actor_start_s()
            for n in s.nodes:
                while len(cluster.list_all_nodes()) < n:
                    t = time.perf_counter()
                    cluster.add_node(num_cpus=1)
                    cluster.wait_for_nodes()
                    node_start[n] = time.perf_counter() - t
                say(f"figure 5: {n} node(s), {int(ray.cluster_resources().get('CPU', 0))} CPU(s): fixed grid")
                runs[n] = run_grid(space, data_dir, s.limit, s.grid, tmp / "runs", f"nodes{n}", cluster.address)
                say(f"figure 5: {n} node(s): fit {runs[n]['fit_s']:.1f}s, errors {len(runs[n]['errors'])}")
                # After the last node: a trial's driver holds a sliver of the head node's CPU, so
                # ddp_workers 1-CPU workers need ddp_workers other nodes.
                if n == max(s.nodes) and n > s.ddp_workers:
                    ddp = measure_ddp(space, data_dir, s, tmp, cluster.address)
        finally:
            ray.shutdown()
            cluster.shutdown()
    calib = calibration(runs[1], s.epochs, actor_s) if 1 in runs else None
    check = []
    for n, run in runs.items():
        row = {"nodes": n, "measured_fit_s": run["fit_s"], "errors": run["errors"] or None,
               "measured_until_first_trial_s": run["overheads"].get("first_trial_start_s")}
        if calib:
            row["model_real_nodes_s"] = predict(calib, n, None)
            row[f"model_on_{cores}_cores_s"] = predict(calib, n, cores)
            row["model_error"] = ratio(row[f"model_on_{cores}_cores_s"], run["fit_s"])
            row["speedup_measured"] = ratio(runs[1]["fit_s"], run["fit_s"])
        check.append(row)
    return {
        "settings": {**asdict(s), "cores": cores},
        "node_start_s": node_start,
        "check": check,
        "ddp": ddp,
        "model": paper_model(calib, ddp) if calib else None,
        "runs": {n: {k: v for k, v in r.items() if k != "clock"} for n, r in runs.items()},
    }


def measure_ddp(space, data_dir: str, s: Settings, tmp, address: str) -> dict[str, Any]:
    """One data-parallel trial (Ray Train) on the cluster: its start-up and its epoch time."""
    say(f"figure 5: one data-parallel trial, {s.ddp_workers} workers")
    try:
        run = run_grid(space, data_dir, s.limit, DDP_GRID, tmp / "runs", "ddp", address, workers=s.ddp_workers,
                       timeout_s=240)
        plain = run_grid(space, data_dir, s.limit, DDP_GRID, tmp / "runs", "plain1", address)
    except Exception as e:  # noqa: BLE001 - data parallelism is optional; report why it did not run
        return {"workers": s.ddp_workers, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    out = ddp_summary(run, s.ddp_workers)
    out["plain_trial"] = ddp_summary(plain, 1)
    say(f"figure 5: data-parallel trial start-up {out['startup_s']}s vs plain {out['plain_trial']['startup_s']}s")
    return out
