"""What a person watching a sweep reads: one line per trial event and a summary every minute.

Each line starts with the time since the tuner was set up and ``k/N``, trials finished of the
sweep's ``num_samples``, and fits a 100-column terminal: a trial's config is shown by its searched
parameters only (the space's constants are the same for every trial), cut to fit. The untruncated
lines, each trial's full config among them, go to ``sweep.log`` in the experiment folder. Lines
are plain text, so CI logs and pipes read the same as a terminal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from dlb_tune.asha import SweepState, time_left
from dlb_tune.experiment import is_uri
from dlb_tune.space import SweepSpec

WIDTH = 100  # columns of the terminal every line must fit
SUMMARY_EVERY_S = 60.0  # seconds between summary lines
LOG_FILE = "sweep.log"


def fit(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[:width - 3] + "..."


def short_config(config: dict[str, Any], spec: SweepSpec) -> str:
    """The searched parameters only: the constants are the same in every trial."""
    return " ".join(f"{k}={_short(config.get(k))}" for k in spec.searched())


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def clock(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def better(spec: SweepSpec, value: float, best: float | None) -> bool:
    return best is None or (value > best if spec.mode == "max" else value < best)


def summary_line(spec: SweepSpec, elapsed_s: float, counts: dict[str, int], best: float | None,
                 left_s: float | None) -> str:
    """running / pending / done counts, the best so far and the time left, in one line."""
    done = counts["completed"] + counts["stopped_early"] + counts["errored"]
    best_text = "none yet" if best is None else f"{best:.4f}"
    left = "" if left_s is None or left_s != left_s else f"; ~{clock(left_s)} left"
    return fit(f"[{clock(elapsed_s):>6} {done}/{spec.num_samples}] {counts['running']} running, "
               f"{counts['pending']} pending, {done} done: {counts['stopped_early']} stopped early, "
               f"{counts['errored']} errored; best {best_text}{left}")


class Progress:
    """A Tune callback printing one line per trial event instead of Ray's tables."""

    def __new__(cls, spec: SweepSpec, echo: Callable[[str], None], *, exp_dir: str | None = None,
                concurrency: int = 1, scheduler: str = "asha", summary_every_s: float = SUMMARY_EVERY_S):
        from ray import tune

        log = None if exp_dir is None or is_uri(exp_dir) else Path(exp_dir) / LOG_FILE

        class _Progress(tune.Callback):
            def __init__(self):
                self.t0 = self.last_summary = time.time()
                self.best: float | None = None
                self.finished: dict[str, str] = {}  # trial id -> completed | stopped_early | errored
                self.epoch_s: dict[str, list[float]] = {}  # seconds per epoch, per trial
                self.epochs: dict[str, int] = {}

            def _say(self, full: str) -> None:
                echo(fit(full))
                if log is not None:
                    with open(log, "a") as f:
                        f.write(full + "\n")

            def _line(self, trial, text: str) -> None:
                self._say(f"[{clock(time.time() - self.t0):>6} {len(self.finished)}/{spec.num_samples}] "
                          f"{trial.trial_id}  {text}")

            def on_trial_start(self, iteration, trials, trial, **info):
                self._line(trial, "start " + short_config(trial.config, spec))
                if log is not None:  # the whole config, constants included, for the record
                    with open(log, "a") as f:
                        f.write(f"  config {trial.trial_id}: {json.dumps(trial.config, default=str)}\n")

            def on_trial_result(self, iteration, trials, trial, result, **info):
                value = result.get(spec.metric)
                if value is None:
                    return
                if better(spec, value, self.best):
                    self.best = value
                self.epochs[trial.trial_id] = int(result.get("epoch", 0) or 0)
                self.epoch_s.setdefault(trial.trial_id, []).append(float(result.get("time_this_iter_s", 0.0)))
                self._line(trial, f"epoch {result.get('epoch', '?')}/{spec.max_epochs}  {spec.metric} "
                                  f"{value:.4f}  best {self.best:.4f}  {result.get('epoch_s', 0):.1f}s/epoch")

            def on_trial_complete(self, iteration, trials, trial, **info):
                epoch = (trial.last_result or {}).get("epoch", 0)
                done = epoch >= spec.max_epochs
                self.finished[trial.trial_id] = "completed" if done else "stopped_early"
                self._line(trial, "done" if done else f"stopped early after epoch {epoch}")

            def on_trial_error(self, iteration, trials, trial, **info):
                from dlb_tune.results import first_line

                self.finished[trial.trial_id] = "errored"
                self._line(trial, "ERROR " + first_line(getattr(trial, "error_msg", None) or "failed"))

            def on_step_end(self, iteration, trials, **info):
                if time.time() - self.last_summary >= summary_every_s:
                    self.summary(trials)

            def summary(self, trials) -> None:
                self.last_summary = time.time()
                elapsed = self.last_summary - self.t0
                counts = self.counts(trials)
                self._say(summary_line(spec, elapsed, counts, self.best, self.left(elapsed, trials)))

            def counts(self, trials) -> dict[str, int]:
                running = sum(1 for t in trials if t.status == "RUNNING")
                states = list(self.finished.values())
                return {"running": running, "pending": max(0, spec.num_samples - running - len(states)),
                        **{s: states.count(s) for s in ("completed", "stopped_early", "errored")}}

            def left(self, elapsed: float, trials) -> float | None:
                speeds = [sum(v) / len(v) for v in self.epoch_s.values() if v]
                if not speeds:
                    return None
                running = [self.epochs.get(t.trial_id, 0) for t in trials
                           if t.status == "RUNNING" and t.trial_id not in self.finished]
                state = SweepState(finished=[self.epochs.get(t, 0) for t in self.finished], running=running,
                                   pending=max(0, spec.num_samples - len(self.finished) - len(running)))
                return time_left(speeds, state, elapsed_s=elapsed, max_epochs=spec.max_epochs, concurrency=concurrency,
                                 scheduler=scheduler, grace_period=spec.grace_period,
                                 reduction_factor=spec.reduction_factor, budget_s=spec.time_budget_s)

        return _Progress()
