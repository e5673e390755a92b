"""A finished sweep's summary, as the sweep prints it at its end and ``dlb-tune results`` again,
from ``final.json`` alone."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dlb_tune.compared import compared_lines
from dlb_tune.objective import Objective, TrialStatus
from dlb_tune.show import fmt, wrapped


def summary_lines(final: dict[str, Any], df: pd.DataFrame, columns: int | None = None) -> list[str]:
    """The summary wrapped at spaces to ``columns`` (default: the terminal's width)."""
    return [part for line in _lines(final) for part in wrapped(line, columns)]


def _lines(final: dict[str, Any]) -> list[str]:
    t = final["trials"]
    lines = [
        "",
        f"== {final['task']} sweep '{final['name']}' finished in {_wall(final)} ==",
        f"trials: {t['total']} total, {t['completed']} completed, {t['stopped_early']} stopped early "
        f"by ASHA, {t['cut_by_budget']} cut by the time budget, {t['incomplete']} incomplete, "
        f"{t['errored']} errored",
    ]
    if "rejected" in t:
        lines.append(f"rejected before training: {t['rejected']} configuration(s) over max_params {final['max_params']}")
    if final.get("interrupted"):
        lines.append(f"interrupted: {t['incomplete']} trial(s) unfinished; nothing is lost. Continue with "
                     f"`dlb-tune resume {final['name']}`; the test split is evaluated when the sweep ends")
    best = final.get("best")
    if best:
        cfg = " ".join(f"{k}={_fmt(v)}" for k, v in best["config"].items())
        lines.append(f"best trial {best['trial_id']}: {final['metric']} {best[final['metric']]:.4f} "
                     f"(epoch {best['epoch']})")
        lines.append(f"  config: {cfg}")
    course = final.get("course")
    if course:
        value = course[final["metric"]]
        shown = "no result" if value is None else f"{final['metric']} {value:.4f} (epoch {course['epoch']})"
        lines.append(f"initial point (space file), trial {course['trial_id']}: {shown}, {TrialStatus(course['status']).words} "
                     f"after {course['epochs']} epoch(s)")
    test = final.get("test")
    if test:
        shown = " ".join(f"{k} {_fmt(v)}" for k, v in test.items() if isinstance(v, (int, float)))
        lines.append(f"test (evaluated once): {shown}")
        if final.get("target") is not None and "target_met" in final:
            verdict = "met" if final["target_met"] else "NOT met"
            op = Objective(final["metric"], final["mode"]).at_least
            lines.append(f"target {final['test_metric']} {op} {final['target']}: {verdict}")
    for err in final["errors"][:5]:
        lines.append(f"errored {err['trial_id']}: {err['error']}")
    if final.get("pareto"):
        drawn = final.get("pareto_figures") or {}
        among = f" ({drawn['among']})" if drawn.get("among") else ""
        best_on = f"; highest {drawn['metric']}{among}: trial {drawn['trial_id']} ({fmt(drawn['value'])})" if drawn else ""
        lines.append(f"pareto front: {len(final['pareto'])} trial(s){best_on}")
    lines += compared_lines(final)
    lines.append(f"results: {final['experiment_dir']}/results.parquet, final.json")
    return lines


def _wall(final: dict[str, Any]) -> str:
    """The command's wall time with its parts; only the trials' time for sweeps from before."""
    t = final.get("timings")
    if not t or "command_s" not in final:
        return f"{final['wall_s']:.0f}s"
    return (f"{final['command_s']:.0f}s (data {t['data_s']:.0f}s, Ray start-up {t['ray_start_s']:.0f}s, "
            f"trials {t['trials_s']:.0f}s, test evaluation {t['test_s']:.0f}s)")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
