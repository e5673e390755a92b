"""The table that answers a ``compare_by`` question ("RNN, GRU or LSTM?"), from ``final.json``.

One row per value of the compared parameter: the trials and epochs it was given, its best
validation value (the sweep metric), that best config's spread over ``--seeds K`` re-runs (mean
and sample standard deviation; ``DEFAULT_SEEDS`` when the sweep compares values and ``--seeds`` is
not given), and its test value, read once after the sweep from the driver, *for comparison, not
used for selection*: the overall winner is still the best validation value.

``final.json`` holds it under ``compared``: ``{"param": ..., "rows": [...]}``; the sweep's finish
writes the first columns, the re-runs (``reruns.py``) add ``mean``, ``std`` and ``values``.
Plain data here: the readers (``results``, ``report``) import this module.
"""

from __future__ import annotations

from typing import Any

from dlb_tune.objective import TrialStatus
from dlb_tune.show import fmt

DEFAULT_SEEDS = 3
FOR_COMPARISON = "for comparison, not used for selection"


def value_rows(df, param: str, values: list[Any], metric: str, goal) -> list[dict[str, Any]]:
    """Per value, in the space's order: trials, epochs, the best trial (by ``best_<metric>``)."""
    col, best_col = f"config/{param}", f"best_{metric}"
    rows = []
    for value in values:
        mine = df[df[col] == value] if col in df else df.iloc[0:0]
        row: dict[str, Any] = {"value": value, "trials": int(len(mine)),
                               "epochs": int(mine["epochs"].sum()) if "epochs" in mine else 0}
        scored = mine[mine["status"] != TrialStatus.ERRORED]
        scored = scored.dropna(subset=[best_col]) if best_col in scored else scored.iloc[0:0]
        if len(scored):
            best = goal.sort(scored, best_col).iloc[0]
            row.update(trial_id=str(best["trial_id"]), best=float(best[best_col]))
        rows.append(row)
    return rows


def add_seed_runs(compared: dict[str, Any], ranking: list[dict[str, Any]]) -> None:
    """The re-runs of each value's best (``reruns.rank``'s entries, matched by trial id)."""
    by_trial = {e["trial_id"]: e for e in ranking}
    for row in compared["rows"]:
        runs = by_trial.get(row.get("trial_id"))
        if runs and "mean" in runs:
            row.update(mean=runs["mean"], std=runs["std"], values=runs["values"])


def compared_lines(final: dict[str, Any]) -> list[str]:
    """The table as the summary prints it, and a line on which differences exceed one standard deviation."""
    compared = final.get("compared")
    if not compared:
        return []
    metric, test_metric = final["metric"], compared["test_metric"]
    rows = compared["rows"]
    seeded = any("mean" in r for r in rows)
    head = [compared["param"], "trials", "epochs", f"best {metric}"]
    head += [f"mean +- std ({len(next(r['values'] for r in rows if 'values' in r))} seeds)"] if seeded else []
    head += [test_metric + "*"]
    table = [head]
    for r in rows:
        cells = [str(r["value"]), str(r["trials"]), str(r["epochs"]), fmt(r.get("best"))]
        if seeded:
            cells.append(f"{r['mean']:.4f} +- {r['std']:.4f}" if "mean" in r else "-")
        cells.append(fmt(r.get("test")))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [f"compared by {compared['param']}: equal shares of the trials, a sampler each"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.append(f"  * {FOR_COMPARISON}; the winner is picked on validation")
    lines += ["  " + s for s in separated(rows)]
    return lines


def separated(rows: list[dict[str, Any]]) -> list[str]:
    """Which pairs of values differ by more than one standard deviation (the larger of the two)
    in their re-runs' means; nothing without re-runs."""
    seeded = [r for r in rows if "mean" in r]
    if len(seeded) < 2:
        return []
    out = []
    for i, a in enumerate(seeded):
        for b in seeded[i + 1:]:
            gap, sd = abs(a["mean"] - b["mean"]), max(a["std"], b["std"])
            word = "exceeds" if gap > sd else "within"
            out.append(f"{a['value']} vs {b['value']}: difference {gap:.4f} {word} one std ({sd:.4f})")
    return out
