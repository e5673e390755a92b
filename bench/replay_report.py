"""The replay benchmark's statistics, figure and table (``bench/replay.py`` makes the runs).

Per strategy: time to the target in simulated seconds (median and interquartile range over
seeds; a run that misses the target is censored at the budget, so a median past the budget reads
"> budget"), the best value within the budget, the anytime curve (best so far against simulated
time, median and IQR band) and a Wilcoxon signed-rank test against the default, paired by seed.

Two clocks. Tune's: wall seconds since the first trial started / scale, so Tune's overhead per
result counts 1/scale times over and varies with the shared machine's load at the run's hour.
The work clock: the recorded seconds of every epoch reported so far, over the two slots, i.e. the
time the same decisions take with no overhead and no idle slot; Optuna's in-process loop, which
has no Tune in it, is compared with Tune's strategies on that clock.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS as BENCH_RESULTS, save_json, say

RESULTS = BENCH_RESULTS / "replay"
CONCURRENCY = 2  # a default sweep on 2 CPUs: one CPU per trial, two trials at a time
CURVE_POINTS = 200  # simulated-time grid of the anytime curves


def sim_results(run: dict[str, Any], table=None) -> tuple[np.ndarray, np.ndarray]:
    """A run's results within its budget as (simulated seconds, value), in the order the driver saw
    them; on the work clock of ``table`` if one is given."""
    rows = np.asarray(run["results"], dtype=float).reshape(-1, 4)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    rows = rows[rows[:, 0] / run["scale"] <= run["budget_s"]]  # the budget is what the run had on Tune's clock
    worst = -np.inf if run.get("mode", "max") == "max" else np.inf  # a diverged epoch's NaN
    t = rows[:, 0] / run["scale"] if table is None else work_clock(rows, table)
    return t, np.where(np.isfinite(rows[:, 1]), rows[:, 1], worst)


def work_clock(rows: np.ndarray, table) -> np.ndarray:
    """Each result's time with no overhead: the recorded seconds of the epochs reported up to it,
    shared by the two slots. Idle slots are not counted (HyperBand's bracket ends, the run's tail)."""
    secs = [table.curve(int(point))[1][int(epoch) - 1] for point, epoch in zip(rows[:, 3], rows[:, 2])]
    return np.cumsum(secs) / CONCURRENCY


def better(mode: str):
    return (lambda a, b: a >= b) if mode == "max" else (lambda a, b: a <= b)


def time_to_target(run: dict[str, Any], target: float, mode: str, table=None) -> float | None:
    """Simulated seconds (on ``table``'s work clock if given) until a result reached ``target``
    within the budget; None: missed."""
    t, v = sim_results(run, table)
    hit = np.nonzero(better(mode)(v, target))[0]
    return float(t[hit[0]]) if hit.size else None


def best_within_budget(run: dict[str, Any], mode: str) -> float | None:
    _, v = sim_results(run)
    v = v[np.isfinite(v)]
    return None if not v.size else float(v.max() if mode == "max" else v.min())


def anytime(run: dict[str, Any], grid: np.ndarray, mode: str, table=None) -> np.ndarray:
    """Best so far at each simulated time of ``grid`` (NaN before the first result)."""
    t, v = sim_results(run, table)
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


def summarize(runs: list[dict[str, Any]], target: float, mode: str, default: str, table=None) -> dict[str, Any]:
    """Per strategy: time to target (Tune's clock; also the work clock if ``table`` is given), best
    value, p-values against ``default`` (paired by seed)."""
    by = group(runs)
    budget = runs[0]["budget_s"]
    clocks = {"": None, "work_": table} if table is not None else {"": None}
    censored = {prefix: {name: {r["seed"]: _censor(time_to_target(r, target, mode, clock), budget) for r in rs}
                         for name, rs in by.items()} for prefix, clock in clocks.items()}
    bests = {name: {r["seed"]: best_within_budget(r, mode) for r in rs} for name, rs in by.items()}
    out = {}
    for name, rs in by.items():
        times = list(censored[""][name].values())
        vals = [b for b in bests[name].values() if b is not None]
        out[name] = {"seeds": len(rs), "reached": int(sum(t < budget for t in times)),
                     "best_q": quartiles(vals) if vals else None,
                     "p_best_vs_default": _paired(bests, name, default),
                     "wall_s_median": float(np.median([r["wall_s"] for r in rs]))}
        if table is not None:  # a run that Tune's overhead made miss its work: cut before the budget
            out[name]["work_covered_q"] = quartiles([_covered(r, table) for r in rs])
        for prefix in clocks:
            out[name][f"{prefix}time_to_target_q"] = quartiles(list(censored[prefix][name].values()))
            out[name][f"p_{prefix}time_vs_default"] = _paired(censored[prefix], name, default)
    return out


def _covered(run: dict[str, Any], table) -> float:
    t, _ = sim_results(run, table)
    return float(t[-1]) if t.size else 0.0


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


def curves(runs: list[dict[str, Any]], mode: str, table=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The simulated-time grid and, per strategy, the 25/50/75th percentile of best so far (on
    ``table``'s work clock if given)."""
    grid = np.linspace(0, runs[0]["budget_s"], CURVE_POINTS)
    out = {}
    for name, rs in group(runs).items():
        stack = np.vstack([anytime(r, grid, mode, table) for r in rs])
        with warnings.catch_warnings():  # all-NaN columns: before any run's first result
            warnings.simplefilter("ignore", RuntimeWarning)
            out[name] = np.nanpercentile(stack, [25, 50, 75], axis=0)
    return grid, out


# --- files ------------------------------------------------------------------------------------


def write(setup, runs: list[dict[str, Any]], target: float, quantile: float, about: dict[str, str],
          held_out: int | None = None) -> Path:
    """``TASK.json``, ``TASK.png`` and ``TASK.md`` in bench/results/replay/ from the matching runs;
    ``about``: each strategy's description. ``held_out``: only the seeds from this one on (seeds
    that played no part in choosing the default), written as ``TASK.held-out-N.*``."""
    task, key = setup.table.meta["task"], setup.key()
    runs = [r for r in runs if all(r.get(k) == v for k, v in key.items())
            and (held_out is None or r["seed"] >= held_out)]
    if not runs:
        raise SystemExit(f"error: no runs of {task} at scale {setup.scale} on this table yet; run without --summary")
    mode = setup.table.mode
    summary = summarize(runs, target, mode, setup.default, setup.table)
    trained = sum(setup.table.diverged_at(p) is None for p in range(len(setup.table.points)))
    overhead_rec = json.loads(_overhead_path(setup.name).read_text()) if _overhead_path(setup.name).exists() else None
    rec = {"task": task, **key, "metric": setup.table.metric, "mode": mode, "target": target,
           "target_note": f"the {quantile:.0%} quantile of the final values of the table's {trained} points "
                          "that trained to the end",
           "table_best": setup.table.best(), "default": setup.default, "concurrency": CONCURRENCY,
           "space": setup.spec.to_yaml(), "strategies": {n: {"about": about[n], **s} for n, s in summary.items()},
           "overhead": overhead_rec}
    name = setup.name if held_out is None else f"{setup.name}.held-out-{held_out}"
    if held_out is not None:
        rec["held_out_from_seed"] = held_out
    save_json(RESULTS / f"{name}.json", rec)
    figure(runs, rec, RESULTS / f"{name}.png", setup.table)
    path = RESULTS / f"{name}.md"
    path.write_text(markdown(rec))
    return path


def markdown(rec: dict[str, Any]) -> str:
    budget = rec["budget_s"]
    work = any("work_time_to_target_q" in s for s in rec["strategies"].values())
    lines = [f"**{rec['task']}**: target {rec['metric']} {'>=' if rec['mode'] == 'max' else '<='} {rec['target']:.4f} "
             f"({rec['target_note']}; table best {rec['table_best']:.4f}), budget {budget:g} simulated s, "
             f"{rec['num_samples']} trials x {rec['max_epochs']} epochs, 2 at a time, scale {rec['scale']:g}.",
             "", "| strategy | seeds | reached | time to target, median [IQR] (s) | p vs default | "
             + ("on the work clock (s) | p vs default | work done in budget, median (s) | " if work else "")
             + "best in budget, median [IQR] | p vs default |", "|---|---|---|---|---|" + ("---|---|---|" if work else "") + "---|---|"]
    key = "work_time_to_target_q" if work else "time_to_target_q"
    for name, s in sorted(rec["strategies"].items(), key=lambda kv: kv[1][key][1]):
        b = s["best_q"]
        best = f"{b[1]:.4f} [{b[0]:.4f}, {b[2]:.4f}]" if b else "-"
        star = " (default)" if name == rec["default"] else ""
        times = f"{_quartiles(s['time_to_target_q'], budget)} | {_p(s['p_time_vs_default'])} |"
        if work:
            times += (f" {_quartiles(s['work_time_to_target_q'], budget)} | {_p(s['p_work_time_vs_default'])} | "
                      f"{s['work_covered_q'][1]:.0f} |")
        lines.append(f"| {name}{star} | {s['seeds']} | {s['reached']} | {times} {best} | {_p(s['p_best_vs_default'])} |")
    if rec.get("overhead"):
        lines += ["", overhead_line(rec["overhead"])]
    return "\n".join(lines) + "\n"


def overhead_line(o: dict[str, Any]) -> str:
    """What the constant-epoch replay (``bench.replay.overhead``) measured, in one sentence."""
    line = (f"Overhead at scale {o['scale']:g} (a constant-epoch table, {o['trials']} trials x {o['epochs']} epochs of "
            f"{o['epoch_s']:.2f} s, random + FIFO): Tune's run ends {_median(o['overhead_pct']):.0f}% after its ideal "
            f"{o['ideal_sim_s']:.0f} simulated s ({_median(o['per_result_ms']):.0f} ms of wall per result and slot)")
    if o.get("in_process_pct"):
        line += (f"; Optuna's in-process loop, the same trials, {_median(o['in_process_pct']):.0f}% "
                 f"({_median(o['in_process_per_result_ms']):.0f} ms)")
    return line + f"; load average {'/'.join(map(str, o.get('load') or ['?']))}."


def _median(xs: list[float]) -> float:
    return float(np.median(xs))


def _quartiles(q: list[float], budget: float) -> str:
    return f"> {budget:g}" if q[1] >= budget else f"{q[1]:.0f} [{q[0]:.0f}, {_fmt_upper(q[2], budget)}]"


def _fmt_upper(v: float, budget: float) -> str:
    return f">{budget:g}" if v >= budget else f"{v:.0f}"


def _p(p: float | None) -> str:
    return "-" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}"


def figure(runs: list[dict[str, Any]], rec: dict[str, Any], path: Path, table=None) -> None:
    """Anytime best per strategy, on Tune's clock and (with ``table``) on the work clock beside it.
    Nine strategies' bands overlap into a blur: only the default's and the fastest other's are
    shaded; every median is drawn, the default's thickest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clocks = [("Tune's clock: wall since the first trial / scale", None)]
    if table is not None:
        clocks.append(("work clock: recorded epoch seconds reported / 2", table))
    fig, axes = plt.subplots(1, len(clocks), figsize=(7 * len(clocks), 5.5), sharey=True, squeeze=False)
    colors = dict(zip(sorted(rec["strategies"]), plt.get_cmap("tab20").colors))  # 13 strategies: tab10 has too few
    for ax, (xlabel, clock) in zip(axes[0], clocks):
        grid, bands = curves(runs, rec["mode"], clock)
        shaded = {rec["default"], _fastest_other(rec, "work_" if clock is not None else "")}
        for name, (lo, mid, hi) in sorted(bands.items()):
            style = {"lw": 2.8, "color": "k"} if name == rec["default"] else {"lw": 1.4, "color": colors[name]}
            ax.plot(grid, mid, ls="-" if "optuna" in name else "--", label=f"{name} (n={rec['strategies'][name]['seeds']})",
                    **style)
            if name in shaded:
                ax.fill_between(grid, lo, hi, color=style["color"], alpha=0.12, lw=0)
        ax.axhline(rec["target"], color="grey", ls=":", lw=1, label=f"target {rec['target']:.4f}")
        ax.set_xlabel(f"simulated seconds ({xlabel})")
        ax.set_ylim(*_ylim(bands, rec))
    axes[0][0].set_ylabel(f"best {rec['metric']} so far (median; IQR band: default and fastest other)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    seeds = f", held-out seeds from {rec['held_out_from_seed']} on" if "held_out_from_seed" in rec else ""
    fig.suptitle(f"{rec['task']}: anytime best, {rec['num_samples']} trials x {rec['max_epochs']} epochs, "
                 f"2 at a time{seeds}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fastest_other(rec: dict[str, Any], prefix: str) -> str:
    others = {n: s[f"{prefix}time_to_target_q"][1] for n, s in rec["strategies"].items() if n != rec["default"]}
    return min(others, key=others.get) if others else rec["default"]


def _ylim(bands: dict[str, np.ndarray], rec: dict[str, Any]) -> tuple[float, float] | tuple[None, None]:
    """From the start of the climb, not the first trials' chance level, to just above the table's best."""
    finite = np.concatenate([b[1][np.isfinite(b[1])] for b in bands.values()])
    if not finite.size or rec["mode"] != "max":
        return None, None
    lo = np.percentile(finite, 2)
    return lo, rec["table_best"] + 0.1 * (rec["table_best"] - lo)


def _overhead_path(name: str) -> Path:
    return RESULTS / f"{name}.overhead.json"


def save_overhead(setup, rec: dict[str, Any]) -> None:
    path = _overhead_path(setup.name)
    save_json(path, {"table": setup.table_id, **rec})
    say(f"{overhead_line(rec)} -> {path}")
