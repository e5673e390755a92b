"""A sweep in numbers, from its experiment folder alone: when the winner's validation level was
first reached, the best value over time, and one row per sweep for ``compare``.

Wall-clock times are seconds since the sweep started: the earliest trial start, i.e. the first
result's ``ended_at`` (the trial's own clock at the epoch's end) less its ``time_this_iter_s``. "Time to the winner's validation level" is
the first such second at which any trial's validation value of the sweep metric was as good as
the winner's best validation value. It is a validation figure: the space file's ``target`` is
judged on the test split, once, and is never set against validation values here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from dlb_tune.objective import ENDED

if TYPE_CHECKING:  # read, never built, here
    from dlb_tune.experiment import Experiment


def time_to_best_val(exp: Experiment) -> float | None:
    """First second since the sweep's first trial started at which any trial's validation value of
    the sweep metric reached the winner's best validation value (the sweep's best)."""
    hist = exp.history()
    if hist.empty or exp.metric not in hist or hist[exp.metric].notna().sum() == 0:
        return None
    level = exp.goal.best(hist[exp.metric])
    hit = hist[[exp.goal.reached(v, level) for v in hist[exp.metric]]]
    return float(hit["t_s"].min()) if len(hit) else None


def best_so_far(exp: Experiment) -> pd.DataFrame:
    """``t_s`` and the best sweep-metric value seen by then, one row per result."""
    hist = exp.history().dropna(subset=[exp.metric])
    values = exp.goal.running_best(hist[exp.metric])
    return pd.DataFrame({"t_s": hist["t_s"].to_numpy(), "best": values.to_numpy()})


def sampler_of(exp: Experiment) -> str:
    """The sampler that ran: space.yaml records it (``sweep.spec_as_run``); a sweep from before
    ``--sampler`` ran ``--search random`` as Ray's random search, which space.yaml does not say."""
    if not exp.spec.searched():
        return "none"
    if (exp.final or {}).get("search", exp.sweep.get("search")) == "random":
        return "random"
    return exp.spec.search.get("sampler", "tpe")


def summary_row(exp: Experiment) -> dict[str, Any]:
    """One sweep in numbers: what ``compare`` lays side by side."""
    final, t = exp.final or {}, exp.trials
    best_col = f"best_{exp.metric}"
    best = exp.goal.best(t[best_col]) if best_col in t else None
    test_metric = final.get("test_metric") or "test_" + exp.metric.removeprefix("val_")
    counts = t["status"].value_counts() if len(t) else pd.Series(dtype=int)
    # validation figures first, the test split's verdict last: never one beside the other
    return {
        "name": exp.name, "task": exp.spec.task, "sampler": sampler_of(exp),
        "scheduler": final.get("scheduler", exp.sweep.get("scheduler")), "metric": exp.metric,
        "best_val": best, "time_to_best_val_s": time_to_best_val(exp),
        "trials": len(t), **{s.value: int(counts.get(s, 0)) for s in ENDED},
        "trial_epochs": int(t["epochs"].sum()) if "epochs" in t else None, "wall_s": final.get("wall_s"),
        "test": (final.get("test") or {}).get(test_metric), "test_metric": test_metric,
        "target": exp.spec.target, "target_met": final.get("target_met"),
    }


def compare(exps: list[Experiment]) -> pd.DataFrame:
    return pd.DataFrame([summary_row(e) for e in exps])
