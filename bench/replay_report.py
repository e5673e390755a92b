"""The replay benchmark's statistics, figure and table (``bench/replay.py`` makes the runs).

Per strategy: time to the target in simulated seconds (median and interquartile range over
seeds; a run that misses the target is censored at the budget, so a median past the budget reads
"> budget"), the best value within the budget, the anytime curve (best so far against simulated
time, median and IQR band) and a Wilcoxon signed-rank test against the default, paired by seed.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import save_json

CURVE_POINTS = 200  # simulated-time grid of the anytime curves


def sim_results(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A run's results as (simulated seconds, value), in the order the driver saw them."""
    rows = np.asarray(run["results"], dtype=float).reshape(-1, 4)
    worst = -np.inf if run.get("mode", "max") == "max" else np.inf  # a diverged epoch's NaN
    return rows[:, 0] / run["scale"], np.where(np.isfinite(rows[:, 1]), rows[:, 1], worst)


def better(mode: str):
    return (lambda a, b: a >= b) if mode == "max" else (lambda a, b: a <= b)


def time_to_target(run: dict[str, Any], target: float, mode: str) -> float | None:
    """Simulated seconds until a result reached ``target`` within the budget; None: missed."""
    t, v = sim_results(run)
    hit = np.nonzero(better(mode)(v, target) & (t <= run["budget_s"]))[0]
    return float(t[hit[0]]) if hit.size else None


def best_within_budget(run: dict[str, Any], mode: str) -> float | None:
    t, v = sim_results(run)
    v = v[(t <= run["budget_s"]) & np.isfinite(v)]
    return None if not v.size else float(v.max() if mode == "max" else v.min())


def anytime(run: dict[str, Any], grid: np.ndarray, mode: str) -> np.ndarray:
    """Best so far at each simulated time of ``grid`` (NaN before the first result)."""
    t, v = sim_results(run)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    best = np.maximum.accumulate(v) if mode == "max" else np.minimum.accumulate(v)
    idx = np.searchsorted(t, grid, side="right") - 1
    return np.where(idx >= 0, best[np.clip(idx, 0, None)], np.nan)


def paired_test(xs: list[float], ys: list[float]) -> float | None:
    """Wilcoxon signed-rank p-value (two-sided); None when the pairs never differ."""
    from scipy.stats import wilcoxon

    diffs = [x - y for x, y in zip(xs, ys)]
    if len(diffs) < 2 or all(d == 0 for d in diffs):
        return None
    return float(wilcoxon(xs, ys, zero_method="zsplit").pvalue)


def quartiles(xs: list[float]) -> list[float]:
    return [float(q) for q in np.percentile(xs, [25, 50, 75])]


def summarize(runs: list[dict[str, Any]], target: float, mode: str, default: str) -> dict[str, Any]:
    """Per strategy: time to target, best value, p-values against ``default`` (paired by seed)."""
    by = group(runs)
    budget = runs[0]["budget_s"]
    censored = {name: {r["seed"]: _censor(time_to_target(r, target, mode), budget) for r in rs} for name, rs in by.items()}
    bests = {name: {r["seed"]: best_within_budget(r, mode) for r in rs} for name, rs in by.items()}
    out = {}
    for name, rs in by.items():
        times, reached = list(censored[name].values()), [t < budget for t in censored[name].values()]
        vals = [b for b in bests[name].values() if b is not None]
        out[name] = {"seeds": len(rs), "reached": int(sum(reached)),
                     "time_to_target_q": quartiles(times), "best_q": quartiles(vals) if vals else None,
                     "p_time_vs_default": _paired(censored, name, default),
                     "p_best_vs_default": _paired(bests, name, default),
                     "wall_s_median": float(np.median([r["wall_s"] for r in rs]))}
    return out


def _censor(t: float | None, budget: float) -> float:
    return budget if t is None else t


def _paired(per_seed: dict[str, dict[int, float | None]], name: str, default: str) -> float | None:
    if name == default or default not in per_seed:
        return None
    seeds = sorted(s for s in per_seed[name] if s in per_seed[default]
                   and per_seed[name][s] is not None and per_seed[default][s] is not None)
    return paired_test([per_seed[name][s] for s in seeds], [per_seed[default][s] for s in seeds])


def group(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["strategy"], []).append(r)
    return by


def curves(runs: list[dict[str, Any]], mode: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The simulated-time grid and, per strategy, the 25/50/75th percentile of best so far."""
    grid = np.linspace(0, runs[0]["budget_s"], CURVE_POINTS)
    out = {}
    for name, rs in group(runs).items():
        stack = np.vstack([anytime(r, grid, mode) for r in rs])
        with warnings.catch_warnings():  # all-NaN columns: before any run's first result
            warnings.simplefilter("ignore", RuntimeWarning)
            out[name] = np.nanpercentile(stack, [25, 50, 75], axis=0)
    return grid, out


# --- files ------------------------------------------------------------------------------------


def write(setup, runs: list[dict[str, Any]], target: float, quantile: float) -> Path:
    """``TASK.json``, ``TASK.png`` and ``TASK.md`` in bench/results/replay/ from the matching runs."""
    from bench.replay import DEFAULT, RESULTS, BY_NAME

    task, key = setup.table.meta["task"], setup.key()
    runs = [r for r in runs if all(r.get(k) == v for k, v in key.items())]
    if not runs:
        raise SystemExit(f"error: no runs of {task} at scale {setup.scale} on this table yet; run without --summary")
    mode = setup.table.mode
    summary = summarize(runs, target, mode, DEFAULT)
    trained = sum(setup.table.diverged_at(p) is None for p in range(len(setup.table.points)))
    overhead_rec = json.loads(_overhead_path(task).read_text()) if _overhead_path(task).exists() else None
    rec = {"task": task, **key, "metric": setup.table.metric, "mode": mode, "target": target,
           "target_note": f"the {quantile:.0%} quantile of the final values of the table's {trained} points "
                          "that trained to the end",
           "table_best": setup.table.best(), "default": DEFAULT, "concurrency": 2,
           "space": setup.spec.to_yaml(), "strategies": {n: {"about": BY_NAME[n].about, **s} for n, s in summary.items()},
           "overhead": overhead_rec}
    save_json(RESULTS / f"{task}.json", rec)
    figure(runs, rec, RESULTS / f"{task}.png")
    path = RESULTS / f"{task}.md"
    path.write_text(markdown(rec))
    return path


def markdown(rec: dict[str, Any]) -> str:
    budget = rec["budget_s"]
    lines = [f"**{rec['task']}**: target {rec['metric']} {'>=' if rec['mode'] == 'max' else '<='} {rec['target']:.4f} "
             f"({rec['target_note']}; table best {rec['table_best']:.4f}), budget {budget:g} simulated s, "
             f"{rec['num_samples']} trials x {rec['max_epochs']} epochs, 2 at a time, scale {rec['scale']:g}.",
             "", "| strategy | seeds | reached | time to target, median [IQR] (s) | p vs default | "
             "best in budget, median [IQR] | p vs default |", "|---|---|---|---|---|---|---|"]
    for name, s in sorted(rec["strategies"].items(), key=lambda kv: kv[1]["time_to_target_q"][1]):
        q, b = s["time_to_target_q"], s["best_q"]
        t = f"> {budget:g}" if q[1] >= budget else f"{q[1]:.0f} [{q[0]:.0f}, {_fmt_upper(q[2], budget)}]"
        best = f"{b[1]:.4f} [{b[0]:.4f}, {b[2]:.4f}]" if b else "-"
        star = " (default)" if name == rec["default"] else ""
        lines.append(f"| {name}{star} | {s['seeds']} | {s['reached']} | {t} | {_p(s['p_time_vs_default'])} | {best} | "
                     f"{_p(s['p_best_vs_default'])} |")
    if rec.get("overhead"):
        o = rec["overhead"]
        lines += ["", f"Tune's overhead at scale {o['scale']:g}: a constant-epoch replay ends "
                      f"{np.median(o['overhead_pct']):.1f}% (median of {len(o['overhead_pct'])}) after its ideal "
                      f"{o['ideal_sim_s']:.0f} simulated s."]
    return "\n".join(lines) + "\n"


def _fmt_upper(v: float, budget: float) -> str:
    return f">{budget:g}" if v >= budget else f"{v:.0f}"


def _p(p: float | None) -> str:
    return "-" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}"


def figure(runs: list[dict[str, Any]], rec: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid, bands = curves(runs, rec["mode"])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, (lo, mid, hi) in sorted(bands.items()):
        width = 2.5 if name == rec["default"] else 1.3
        (line,) = ax.plot(grid, mid, lw=width, label=f"{name} (n={rec['strategies'][name]['seeds']})")
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
    ax.axhline(rec["target"], color="k", ls="--", lw=0.8, label=f"target {rec['target']:.4f}")
    finite = np.concatenate([b[1][np.isfinite(b[1])] for b in bands.values()])
    if finite.size and rec["mode"] == "max":  # the start of the climb, not the first trials' chance level
        lo = np.percentile(finite, 2)
        ax.set_ylim(lo, rec["table_best"] + 0.1 * (rec["table_best"] - lo))
    ax.set_xlabel("simulated seconds (wall since the first trial started / scale)")
    ax.set_ylabel(f"best {rec['metric']} so far (median, IQR band)")
    ax.set_title(f"{rec['task']}: anytime best, {rec['num_samples']} trials, 2 at a time")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _overhead_path(task: str) -> Path:
    from bench.replay import RESULTS

    return RESULTS / f"{task}.overhead.json"


def save_overhead(setup, rec: dict[str, Any]) -> None:
    from bench.common import say

    path = _overhead_path(setup.table.meta["task"])
    save_json(path, {"table": setup.table_id, **rec})
    say(f"overhead at scale {rec['scale']:g}: {', '.join(f'{p:.1f}%' for p in rec['overhead_pct'])} "
        f"(ideal {rec['ideal_sim_s']:.0f} sim s, walls {rec['wall_s']}) -> {path}")
