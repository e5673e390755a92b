"""What a person watching a sweep reads: one line per trial event and a summary every minute.

Each line starts with the time since the tuner was set up and ``k/N``, trials finished of the
sweep's ``num_samples``, and fits a 100-column terminal: a trial's config is shown by its searched
parameters only (the space's constants are the same for every trial), cut to fit. The untruncated
lines, each trial's full config among them, go to ``sweep.log`` in the experiment folder. Lines
are plain text, so CI logs and pipes read the same as a terminal.

A Tune callback: imported by the sweep's engine only, never by a command that reads a sweep.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ray import tune

from dlb_tune.asha import SweepState, time_left
from dlb_tune.storage import is_uri
from dlb_tune.objective import TrialStatus
from dlb_tune.show import clock, error_line, fit, short_config
from dlb_tune.space import SweepSpec

SUMMARY_EVERY_S = 60.0  # seconds between summary lines
LOG_FILE = "sweep.log"
COUNTED = (TrialStatus.COMPLETED, TrialStatus.STOPPED_EARLY, TrialStatus.ERRORED)


def summary_line(spec: SweepSpec, elapsed_s: float, counts: dict[str, int], best: float | None,
                 left_s: float | None) -> str:
    """running / pending / done counts, the best so far and the time left, in one line."""
    done = sum(counts[s] for s in COUNTED)
    best_text = "none yet" if best is None else f"{best:.4f}"
    left = "" if left_s is None or left_s != left_s else f"; ~{clock(left_s)} left"
    return fit(f"[{clock(elapsed_s):>6} {done}/{spec.num_samples}] {counts[TrialStatus.RUNNING]} running, "
               f"{counts[TrialStatus.PENDING]} pending, {done} done: {counts[TrialStatus.STOPPED_EARLY]} stopped "
               f"early, {counts[TrialStatus.ERRORED]} errored; best {best_text}{left}")


class Progress(tune.Callback):
    """Prints one line per trial event instead of Ray's tables, and a summary every minute."""

    def __init__(self, spec: SweepSpec, echo: Callable[[str], None], *, exp_dir: str | None = None,
                 concurrency: int = 1, scheduler: str = "asha", summary_every_s: float = SUMMARY_EVERY_S):
        self.spec, self.echo, self.concurrency, self.scheduler = spec, echo, concurrency, scheduler
        self.summary_every_s = summary_every_s
        self.log = None if exp_dir is None or is_uri(exp_dir) else Path(exp_dir) / LOG_FILE
        self.t0 = self.last_summary = time.time()
        self.best: float | None = None
        self.finished: dict[str, TrialStatus] = {}  # trial id -> how it ended
        self.epoch_s: dict[str, list[float]] = {}  # seconds per epoch, per trial
        self.epochs: dict[str, int] = {}

    def _say(self, full: str) -> None:
        self.echo(fit(full))
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(full + "\n")

    def _line(self, trial, text: str) -> None:
        self._say(f"[{clock(time.time() - self.t0):>6} {len(self.finished)}/{self.spec.num_samples}] "
                  f"{trial.trial_id}  {text}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self._line(trial, "start " + short_config(trial.config, self.spec.searched()))
        if self.log is not None:  # the whole config, constants included, for the record
            with open(self.log, "a") as f:
                f.write(f"  config {trial.trial_id}: {json.dumps(trial.config, default=str)}\n")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        spec = self.spec
        value = result.get(spec.metric)
        if value is None:
            return
        if spec.goal.better(value, self.best):
            self.best = value
        self.epochs[trial.trial_id] = int(result.get("epoch", 0) or 0)
        self.epoch_s.setdefault(trial.trial_id, []).append(float(result.get("time_this_iter_s", 0.0)))
        self._line(trial, f"epoch {result.get('epoch', '?')}/{spec.max_epochs}  {spec.metric} "
                          f"{value:.4f}  best {self.best:.4f}  {result.get('epoch_s', 0):.1f}s/epoch")

    def on_trial_complete(self, iteration, trials, trial, **info):
        epoch = int((trial.last_result or {}).get("epoch", 0) or 0)
        status = TrialStatus.classify(epochs=epoch, max_epochs=self.spec.max_epochs)
        self.finished[trial.trial_id] = status
        self._line(trial, "done" if status is TrialStatus.COMPLETED else f"{status.words} after epoch {epoch}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished[trial.trial_id] = TrialStatus.ERRORED
        self._line(trial, "ERROR " + error_line(getattr(trial, "error_msg", None) or "failed"))

    def on_step_end(self, iteration, trials, **info):
        if time.time() - self.last_summary >= self.summary_every_s:
            self.summary(trials)

    def summary(self, trials) -> None:
        self.last_summary = time.time()
        elapsed = self.last_summary - self.t0
        self._say(summary_line(self.spec, elapsed, self.counts(trials), self.best, self.left(elapsed, trials)))

    def counts(self, trials) -> dict[TrialStatus, int]:
        running = sum(1 for t in trials if t.status == "RUNNING")
        states = list(self.finished.values())
        counts: dict[Any, int] = {s: states.count(s) for s in TrialStatus}
        counts[TrialStatus.RUNNING] = running
        counts[TrialStatus.PENDING] = max(0, self.spec.num_samples - running - len(states))
        return counts

    def left(self, elapsed: float, trials) -> float | None:
        spec = self.spec
        speeds = [sum(v) / len(v) for v in self.epoch_s.values() if v]
        if not speeds:
            return None
        running = [self.epochs.get(t.trial_id, 0) for t in trials
                   if t.status == "RUNNING" and t.trial_id not in self.finished]
        state = SweepState(finished=[self.epochs.get(t, 0) for t in self.finished], running=running,
                           pending=max(0, spec.num_samples - len(self.finished) - len(running)))
        return time_left(speeds, state, elapsed_s=elapsed, max_epochs=spec.max_epochs, concurrency=self.concurrency,
                         scheduler=self.scheduler, grace_period=spec.grace_period,
                         reduction_factor=spec.reduction_factor, budget_s=spec.time_budget_s)
