"""``dlb-tune status NAME [--watch [SECONDS]]``: where a sweep stands, running or finished.

Read from the experiment folder alone (``dlb_tune.experiment``: Ray's experiment state and the
trials' files while it runs, results.parquet and final.json after), so it works from another
terminal, with no Ray and no data: trials by state, the best so far and its config, each running
trial's epoch and metric, the elapsed time and an estimate of the time left (``asha.time_left``:
the plan's ASHA simulation at the epoch speeds seen so far). ``--watch`` prints a fresh block
every SECONDS until the sweep ends: plain blocks one after another when not on a terminal,
redrawn in place on one.
"""

from __future__ import annotations

import time
from typing import Callable

from dlb_tune.asha import SweepState, time_left
from dlb_tune.experiment import Experiment, find_experiment, load_experiment, read_live, sweep_alive
from dlb_tune.storage import DamagedFile, ReportError
from dlb_tune.objective import TrialStatus
from dlb_tune.show import clock, fit, short_config

CLEAR = "\x1b[2J\x1b[H"  # clear the terminal, cursor home


def status_lines(exp: Experiment, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    live = read_live(exp.path)
    lines = [fit(f"{exp.name} ({exp.spec.task}): {_state(exp, live, now)}"), _counts_line(exp)]
    lines += _best_lines(exp)
    running = exp.trials[exp.trials["status"] == TrialStatus.RUNNING] if len(exp.trials) else exp.trials
    for row in running.itertuples():
        value = getattr(row, exp.metric, None)
        shown = f"{exp.metric} {value:.4f}" if isinstance(value, float) and value == value else "no result yet"
        lines.append(fit(f"  running {row.trial_id}: epoch {row.epochs}/{exp.spec.max_epochs}, {shown}"))
    if exp.in_progress and live.get("started"):
        lines.append(_time_line(exp, live, now))
    if exp.in_progress and live.get("dashboard") and sweep_alive(live) is not False:  # a URL is never cut
        lines.append(f"Ray dashboard http://{live['dashboard'].removeprefix('http://')}")
    return lines


def _state(exp: Experiment, live: dict, now: float) -> str:
    if not exp.in_progress:
        final = exp.final
        if sweep_alive(live):  # results.parquet is written first: the sweep is still finishing
            return "finishing: the winner's test evaluation and final.json"
        if not final:
            return "stopped before its end, with no final.json (`dlb-tune resume` continues it)"
        wall = clock(final.get("command_s", final["wall_s"]))
        if final.get("interrupted"):
            return f"interrupted after {wall} (`dlb-tune resume` continues it)"
        return f"finished in {wall}"
    return exp.progress_line()


def _counts_line(exp: Experiment) -> str:
    t = exp.trials
    counts = {s: int((t["status"] == s).sum()) if len(t) else 0 for s in TrialStatus}
    # Trials the searcher has not proposed yet are pending too.
    counts[TrialStatus.PENDING] += max(0, exp.spec.num_samples - len(t)) if exp.in_progress else 0
    shown = [TrialStatus.RUNNING, TrialStatus.PENDING, TrialStatus.COMPLETED, TrialStatus.STOPPED_EARLY,
             TrialStatus.ERRORED] + [s for s in (TrialStatus.CUT_BY_BUDGET, TrialStatus.INCOMPLETE) if counts[s]]
    return fit("trials: " + ", ".join(f"{counts[s]} {s.words}" for s in shown))


def _best_lines(exp: Experiment) -> list[str]:
    col = f"best_{exp.metric}"
    ranked = exp.trials.dropna(subset=[col]) if col in exp.trials else exp.trials.iloc[0:0]
    if ranked.empty:
        return [f"best so far: none yet ({exp.metric})"]
    best = ranked.loc[exp.goal.best_index(ranked[col])]
    config = {k.removeprefix("config/"): v for k, v in best.items() if k.startswith("config/")}
    return [fit(f"best so far: trial {best['trial_id']}, {exp.metric} {best[col]:.4f} (epoch {int(best['best_epoch'])})"),
            fit(f"  config: {short_config(config, exp.spec.searched())}")]


def _time_line(exp: Experiment, live: dict, now: float) -> str:
    elapsed = now - live["started"]
    hist = exp.history()
    speeds = (hist.groupby("trial_id")["time_this_iter_s"].mean().tolist()
              if "time_this_iter_s" in hist and len(hist) else [])
    left = time_left(speeds, sweep_state(exp), elapsed_s=elapsed, max_epochs=exp.spec.max_epochs,
                     concurrency=int(live.get("concurrency", 1)), scheduler=exp.sweep.get("scheduler", "asha"),
                     grace_period=exp.spec.grace_period, reduction_factor=exp.spec.reduction_factor,
                     budget_s=exp.spec.time_budget_s)
    shown = "not known until a trial reports" if left != left else f"about {clock(left)}"
    return fit(f"elapsed {clock(elapsed)}; time left {shown} (ASHA replayed at the epoch speeds seen)")


def sweep_state(exp: Experiment) -> SweepState:
    """Epochs run by each finished and running trial; the rest of ``num_samples`` is pending."""
    t = exp.trials
    if not len(t):
        return SweepState([], [], exp.spec.num_samples)
    epochs = t["epochs"].fillna(0).astype(int)
    running = epochs[t["status"] == TrialStatus.RUNNING].tolist()
    finished = epochs[t["status"].map(lambda s: TrialStatus(s).ended)].tolist()
    return SweepState(finished, running, max(0, exp.spec.num_samples - len(finished) - len(running)))


def watch(name: str, storage: str | None, every_s: float | None, echo: Callable[[str], None],
          tty: bool = False) -> None:
    """One block, or (``every_s``) a block every ``every_s`` seconds until the sweep has ended."""
    path = find_experiment(name, storage)
    while True:
        # Asked before reading, so that the frame read after the sweep's end is the last one printed.
        alive = sweep_alive(read_live(path))
        try:
            exp = load_experiment(path)
        except DamagedFile:  # written whole or not at all: waiting would not mend it
            raise
        except ReportError:
            if not every_s or alive is False:
                raise
            echo(f"{path.name}: waiting for the first trial to start")
            time.sleep(every_s)
            continue
        lines = status_lines(exp)
        if every_s and tty:
            echo(CLEAR + "\n".join(lines))
        else:
            echo("\n".join(([time.strftime("-- %H:%M:%S --")] if every_s else []) + lines))
        # a sweep on another host (alive None) has ended once it has written final.json
        if not every_s or alive is False or (alive is None and exp.final):
            return
        time.sleep(every_s)
