"""Instruments for sweeps run through dlb-tune's own Tuner: a clock for trial events, a stopper
that ends the sweep when a target is reached, and a way to attach both.

The Tuner comes from ``dlb_tune.sweep_tuner``, so every product setting (searcher,
scheduler, checkpointing, ``reuse_actors``, resources) is the one users get; only the probes and,
for fixed config lists, the ``param_space`` are added here.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ray import tune


class TrialClock(tune.Callback):
    """Records when each trial starts, reports an epoch and ends, relative to ``restart()``;
    notes the first moment any trial's ``metric`` reaches ``target``."""

    def __init__(self, metric: str, mode: str, target: float | None = None):
        self.metric, self.mode, self.target = metric, mode, target
        self.restart()

    def restart(self) -> None:
        self.t0 = time.perf_counter()
        self.events: list[dict[str, Any]] = []
        self.reached: dict[str, Any] | None = None

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append({"t": self._now(), "kind": "start", "trial": trial.trial_id})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        t, value = self._now(), result.get(self.metric)
        self.events.append({"t": t, "kind": "result", "trial": trial.trial_id, "epoch": result.get("epoch"),
                            "value": value, "epoch_s": result.get("epoch_s")})
        if self.reached is None and self.hits(value):
            self.reached = {"t": t, "trial": trial.trial_id, "epoch": result.get("epoch"), "value": value}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append({"t": self._now(), "kind": "end", "trial": trial.trial_id})

    def on_trial_error(self, iteration, trials, trial, **info):
        self.events.append({"t": self._now(), "kind": "error", "trial": trial.trial_id})

    def hits(self, value: Any) -> bool:
        if self.target is None or not isinstance(value, (int, float)):
            return False
        return value >= self.target if self.mode == "max" else value <= self.target

    def per_trial(self) -> dict[str, dict[str, Any]]:
        """Per trial: start, end, the (time, epoch_s) of every result."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.events:
            rec = out.setdefault(e["trial"], {"start": None, "end": None, "results": []})
            if e["kind"] == "start" and rec["start"] is None:
                rec["start"] = e["t"]
            elif e["kind"] == "result":
                rec["results"].append((e["t"], e.get("epoch_s") or 0.0, e.get("epoch")))
            else:
                rec["end"] = e["t"]
        return out


class StopAtTarget(tune.Stopper):
    """Ends the whole sweep once the clock has seen the target: time-to-target runs need no more."""

    def __init__(self, clock: TrialClock):
        self.clock = clock

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.clock.reached is not None


def attach(tuner, *, callbacks=(), stop=None, param_space: dict[str, Any] | None = None):
    """Add probes (and optionally replace the param_space) on a Tuner from ``sweep_tuner``.

    Ray keeps a Tuner's settings on ``tuner._local_tuner`` (private; dlb-tune reads its
    scheduler the same way). A public hook in ``sweep_tuner`` would make this unnecessary.
    """
    inner = tuner._local_tuner
    if param_space is not None:
        inner.param_space = param_space
    run_config = inner.get_run_config()
    run_config.callbacks = [*(run_config.callbacks or []), *callbacks]
    if stop is not None:
        run_config.stop = stop
    return tuner


def overheads(clock: TrialClock) -> dict[str, Any]:
    """Per-trial start-up (trial start -> first result, less that epoch's own compute) and
    per-epoch reporting overhead (time between results, less the epoch's compute: checkpoint,
    report, scheduling)."""
    startups, per_epoch, trial_walls, compute = [], [], [], []
    trials = clock.per_trial()
    for rec in trials.values():
        results = rec["results"]
        if rec["start"] is None or not results:
            continue
        startups.append(results[0][0] - rec["start"] - results[0][1])
        per_epoch += [(t1 - t0) - es for (t0, _, _), (t1, es, _) in zip(results, results[1:])]
        if rec["end"] is not None:
            trial_walls.append(rec["end"] - rec["start"])
        compute.append(sum(es for _, es, _ in results))
    return {
        "trials": len(startups),
        "startup_s": _stats(startups),
        "per_epoch_overhead_s": _stats(per_epoch),
        "trial_wall_s": _stats(trial_walls),
        "compute_s_total": round(sum(compute), 2),  # the epochs' own time (train + val), summed
        "trial_wall_s_total": round(sum(trial_walls), 2),
        # a slot freed by an ending trial waits this long for the next trial to start
        "end_to_next_start_s": _stats(_refill_gaps(trials)),
        # Tune's own set-up before the first trial starts, and the last trial's end
        "first_trial_start_s": min((r["start"] for r in trials.values() if r["start"] is not None), default=None),
        "last_trial_end_s": max((r["end"] for r in trials.values() if r["end"] is not None), default=None),
    }


def _refill_gaps(trials: dict[str, dict[str, Any]]) -> list[float]:
    starts = sorted(r["start"] for r in trials.values() if r["start"] is not None)
    ends = sorted(r["end"] for r in trials.values() if r["end"] is not None)
    gaps = []
    for end in ends:
        later = [s for s in starts if s >= end]
        if later:
            gaps.append(later[0] - end)
            starts.remove(later[0])
    return gaps


def timeline(clock: TrialClock) -> list[list[Any]]:
    """[trial, start, first result, end] per trial, seconds from the clock's start."""
    rows = []
    for trial, r in clock.per_trial().items():
        first = r["results"][0][0] if r["results"] else None
        rows.append([trial, *(round(x, 2) if x is not None else None for x in (r["start"], first, r["end"]))])
    return sorted(rows, key=lambda row: row[1] if row[1] is not None else 1e9)


def _stats(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    xs = sorted(xs)
    return {"median": round(statistics.median(xs), 3), "mean": round(sum(xs) / len(xs), 3),
            "min": round(xs[0], 3), "max": round(xs[-1], 3), "n": len(xs)}
