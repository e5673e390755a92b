"""The figures of a sweep's report, drawn from the experiment folder alone (matplotlib, files only):
the metric per epoch of every trial, the best value over time, parallel coordinates, fANOVA
parameter importance (Optuna) and a multi-objective sweep's Pareto front. Each returns a
matplotlib figure, or None when the sweep gives it nothing to show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dlb_tune.asha import rungs
from dlb_tune.objective import Objective, TrialStatus
from dlb_tune.report_numbers import best_so_far, time_to_best_val
from dlb_tune.show import seconds
from dlb_tune.storage import to_jsonable

if TYPE_CHECKING:  # read, never built, here
    from dlb_tune.distributions import Distribution
    from dlb_tune.experiment import Experiment
    from dlb_tune.space import SweepSpec

# matplotlib and Optuna are imported inside the functions that draw and rank, to keep start-up fast.

STATUS_STYLE = {  # how each trial status is drawn: line style, colour, marker at its last epoch
    TrialStatus.COMPLETED: dict(ls="-", color=None, marker=None),
    TrialStatus.STOPPED_EARLY: dict(ls="--", color="0.55", marker="x"),
    TrialStatus.CUT_BY_BUDGET: dict(ls="-.", color="0.35", marker="|"),
    TrialStatus.INCOMPLETE: dict(ls=":", color="0.35", marker="|"),
    TrialStatus.ERRORED: dict(ls=":", color="tab:red", marker="X"),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def asha_rungs(spec: SweepSpec) -> list[int]:
    """The epochs at which ASHA compared trials, below max_epochs (a trial there just ends)."""
    return [r for r in rungs(spec.max_epochs, spec.grace_period, spec.reduction_factor) if r < spec.max_epochs]


def best_trial_id(exp: Experiment) -> str | None:
    best = (exp.final or {}).get("best") or {}
    return best.get("trial_id")


def plot_metric_vs_epoch(exp: Experiment):
    """Sweep metric per epoch for every trial, coloured by the trial's best value (colorbar);
    trials that did not run every epoch dashed and faded, ending in their status's marker."""
    plt = _plt()
    from matplotlib.lines import Line2D

    hist = exp.history()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    cmap, norm = _value_scale(exp)
    best_id = best_trial_id(exp)
    for trial_id, h in hist.groupby("trial_id", sort=False):
        h = h.sort_values("epoch")
        status = h["status"].iloc[0]
        style = STATUS_STYLE.get(status, STATUS_STYLE[TrialStatus.INCOMPLETE])
        color = cmap(norm(_trial_best(exp, trial_id)))
        faded = status != TrialStatus.COMPLETED
        ax.plot(h["epoch"], h[exp.metric], ls=style["ls"], color=color, alpha=0.5 if faded else 0.95,
                lw=3.0 if trial_id == best_id else 1.4, gid=f"trial {trial_id}")
        if style["marker"]:
            ax.plot(h["epoch"].iloc[-1], h[exp.metric].iloc[-1], style["marker"], color=color, ms=8,
                    gid=f"end {trial_id}")
    handles = [Line2D([], [], color=cmap(norm(_trial_best(exp, best_id))), lw=3.0,
                      label=f"best trial {best_id} (thick)")] if best_id else []
    handles += _status_handles(exp)
    drawn = _draw_rungs(ax, exp)
    if drawn:
        handles.append(Line2D([], [], color="0.75", lw=1, label=f"ASHA rungs (epochs {', '.join(map(str, drawn))})"))
    if exp.spec.target is not None:
        ax.axhline(exp.spec.target, color="tab:green", ls="--", lw=1)
        handles.append(Line2D([], [], color="tab:green", ls="--", label=f"target {exp.spec.target:g} (judged on test)"))
        _show_value(ax, exp.spec.target)
    ax.legend(handles=handles, loc="best", fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=norm), ax=ax, label=f"trial's best {exp.metric}")
    _integer_epochs(ax, exp.spec.max_epochs)
    ax.set(xlabel="epoch", ylabel=exp.metric, title=f"{exp.name}: {exp.metric} per epoch, every trial")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _value_scale(exp: Experiment):
    """Colour map and norm over the trials' best values: yellow is good whatever the mode."""
    plt = _plt()
    best_col = f"best_{exp.metric}"
    values = exp.trials[best_col].dropna().astype(float) if best_col in exp.trials else pd.Series(dtype=float)
    lo, hi = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1) * 0.01, hi + 0.5 * (abs(hi) or 1) * 0.01
    return plt.get_cmap("viridis" if exp.goal.maximize else "viridis_r"), plt.Normalize(lo, hi)


def _trial_best(exp: Experiment, trial_id: str) -> float:
    best_col = f"best_{exp.metric}"
    row = exp.trials.loc[exp.trials["trial_id"] == trial_id]
    value = row[best_col].iloc[0] if best_col in row and len(row) else None
    return float("nan") if value is None or pd.isna(value) else float(value)


STATUS_LABEL = {TrialStatus.STOPPED_EARLY: "stopped early by ASHA", TrialStatus.CUT_BY_BUDGET: "cut by the time budget"}


def _status_handles(exp: Experiment) -> list:
    """One legend entry per status present: its line style and end marker (colour is the value)."""
    from matplotlib.lines import Line2D

    handles = []
    for status, style in STATUS_STYLE.items():
        n = int((exp.trials["status"] == status).sum())
        if n:
            label = STATUS_LABEL.get(status, status.words)
            handles.append(Line2D([], [], ls=style["ls"], color="0.35", alpha=1.0 if status == TrialStatus.COMPLETED else 0.6,
                                  marker=style["marker"], label=f"{label} ({n})"))
    return handles


def _draw_rungs(ax, exp: Experiment) -> list[int]:
    """Vertical lines at the rungs where ASHA compared trials: only for ASHA sweeps, only those
    some trial reached."""
    if exp.sweep.get("scheduler", "asha") != "asha":
        return []
    reached = exp.trials["epochs"].max() if len(exp.trials) else 0
    drawn = [r for r in asha_rungs(exp.spec) if r <= reached]
    for r in drawn:
        ax.axvline(r, color="0.75", lw=1, zorder=0, gid="rung")
    return drawn


def _integer_epochs(ax, max_epochs: int) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.8, max_epochs + 0.2)


def _show_value(ax, value: float) -> None:
    """Widen the y-axis so ``value`` (a target line) is inside it, with a margin."""
    lo, hi = ax.get_ylim()
    if lo <= value <= hi:
        return
    lo, hi = min(lo, value), max(hi, value)
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)


def plot_best_so_far(exp: Experiment):
    """Best sweep-metric value against wall-clock seconds since the sweep started."""
    plt = _plt()
    hist, curve = exp.history(), best_so_far(exp)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    stopped = hist["status"] == TrialStatus.STOPPED_EARLY
    ax.scatter(hist.loc[~stopped, "t_s"], hist.loc[~stopped, exp.metric], s=10, color="0.6", label="a trial's epoch")
    ax.scatter(hist.loc[stopped, "t_s"], hist.loc[stopped, exp.metric], s=14, marker="x", color="0.6",
               label="epoch of a trial ASHA stopped")
    ax.step(curve["t_s"], curve["best"], where="post", color="tab:blue", lw=2, label="best so far")
    hit = time_to_best_val(exp)
    if hit is not None:
        ax.axvline(hit, color="tab:blue", lw=1, ls=":", label=f"winner's validation level first reached at {seconds(hit)}")
    ax.set(xlabel="seconds since the first trial started", ylabel=exp.metric, title=f"{exp.name}: best {exp.metric} over time")
    _clip_to_spread(ax, hist[exp.metric], exp.goal)
    if exp.spec.target is not None:
        ax.axhline(exp.spec.target, color="tab:green", ls="--", lw=1, label=f"target {exp.spec.target:g} (judged on test)")
        _show_value(ax, exp.spec.target)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _clip_to_spread(ax, values: pd.Series, goal: Objective) -> None:
    """Keep the interesting end in view: a diverged trial should not flatten everyone else."""
    v = values.dropna()
    if len(v) < 4:
        return
    lo, hi = (v.quantile(0.1), v.max()) if goal.maximize else (v.min(), v.quantile(0.9))
    pad = 0.1 * (hi - lo) or 0.01
    ax.set_ylim(lo - pad, hi + pad)


MAX_PARALLEL_AXES = 12  # parameters plus the metric: more and the labels collide at the size written


def plot_parallel(exp: Experiment, importance: list[Importance] | None = None):
    """Parallel coordinates: one axis per searched parameter (the most important first, at most
    ``MAX_PARALLEL_AXES - 1``), then the metric; a line per trial coloured by its best value."""
    plt = _plt()
    params = parallel_params(exp, importance or [])
    best_col = f"best_{exp.metric}"
    t = exp.trials.dropna(subset=[best_col]) if best_col in exp.trials else exp.trials.iloc[0:0]
    if not params or t.empty:
        return None
    cols, ticks = [], []
    for p in params:
        pos, tick = _axis_positions(exp.spec.params[p], t[f"config/{p}"])
        cols.append(pos)
        ticks.append(tick)
    m = t[best_col].astype(float)
    cmap, norm = _value_scale(exp)
    lo, hi = norm.vmin, norm.vmax
    cols.append(((m - lo) / (hi - lo)).to_numpy())
    ticks.append([(0.0, f"{lo:.4g}"), (1.0, f"{hi:.4g}")])
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(cols) + 2), 5.5))
    xs = list(range(len(cols)))
    best_id = best_trial_id(exp)
    for i, (_, row) in enumerate(t.iterrows()):
        ys = [c[i] for c in cols]
        early = row["status"] != TrialStatus.COMPLETED
        if row["trial_id"] == best_id:
            ax.plot(xs, ys, color="tab:red", lw=2.6, zorder=5, gid=f"trial {row['trial_id']}")
        else:
            ax.plot(xs, ys, color=cmap(norm(m.iloc[i])), lw=1.0 if early else 1.8, ls="--" if early else "-",
                    alpha=0.5 if early else 0.9, gid=f"trial {row['trial_id']}")
    for x, tick in zip(xs, ticks):
        ax.axvline(x, color="0.3", lw=0.8)
        for y, label in tick:  # above the trials' lines, on a white patch: readable where lines cross
            ax.text(x + 0.03, y, label, fontsize=7, va="center", zorder=10, gid="axis tick",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.0})
    ax.set_xticks(xs, params + [f"best {exp.metric}"], rotation=30, ha="right", fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    ax.set_xlim(-0.2, len(cols) - 0.6)
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=norm), ax=ax, label=f"best {exp.metric}")
    hidden = len(exp.spec.searched()) - len(params)
    notes = ([f"red: best trial {best_id}"] if best_id else []) + ["dashed: not run to the end"]
    notes += [f"{hidden} less important parameter(s) left out"] if hidden else []
    ax.set_title(f"{exp.name}: parameters against best {exp.metric}\n({'; '.join(notes)})", fontsize=10)
    fig.tight_layout()
    return fig


def parallel_params(exp: Experiment, importance: list[Importance]) -> list[str]:
    """The searched parameters to draw: by importance (the first set's) when known, else in the
    space file's order; at most one axis short of ``MAX_PARALLEL_AXES``."""
    params = [p for p in exp.spec.searched() if f"config/{p}" in exp.trials]
    if importance:
        rank = importance[0].mean
        params = sorted(params, key=lambda p: -rank.get(p, 0.0))
    return params[:MAX_PARALLEL_AXES - 1]


def _axis_positions(dist: Distribution, values: pd.Series) -> tuple[list[float], list[tuple[float, str]]]:
    """Values on a [0, 1] axis: choices evenly spaced, intervals linear (log for loguniform)."""
    position, ticks = dist.axis_scale()
    return [position(to_jsonable(v)) for v in values], ticks


def optuna_distributions(spec: SweepSpec) -> dict[str, Any]:
    """The searched parameters as Optuna distributions, rebuilt from the space file."""
    return {name: spec.params[name].to_optuna() for name in spec.searched()}


MIN_IMPORTANCE_TRIALS = 10  # fANOVA's forest on fewer trials ranks noise with confidence
BOOTSTRAP_RESAMPLES = 10
# fANOVA's cost grows with trees x parameters (~2 s for 64 trees over 14 parameters on a busy
# core): the resamples use a quarter of Optuna's default forest, as their spread is rough anyway.
BOOTSTRAP_TREES = 16


@dataclass
class Importance:
    """fANOVA importance of the searched parameters over one set of trials."""

    label: str  # which trials, judged by which value
    trials: int
    mean: dict[str, float]  # on every trial of the set; sums to 1
    low: dict[str, float]  # 10th and 90th percentiles over bootstrap resamples of the trials
    high: dict[str, float]


def importance_sets(exp: Experiment) -> dict[str, dict[str, float]]:
    """trial_id -> value, per set of trials fANOVA is run on:

    * ``completed``: trials that ran every epoch, judged by their best validation value (what
      Optuna itself would use: it ignores pruned trials);
    * ``first rung``: every trial, by its value at the first ASHA rung (``grace_period``), the
      last epoch all trials share, so trials ASHA stopped count too.
    """
    sets = {}
    t = exp.trials
    done = t[t["status"] == TrialStatus.COMPLETED]
    best_col = f"best_{exp.metric}"
    if best_col in t:
        sets["completed trials, best " + exp.metric] = dict(zip(done["trial_id"], done[best_col]))
    hist = exp.history()
    g = exp.spec.grace_period
    if exp.sweep.get("scheduler", "asha") == "asha" and g < exp.spec.max_epochs and not hist.empty:
        at = hist[hist["epoch"] == g].drop_duplicates("trial_id", keep="last")
        sets[f"all trials, {exp.metric} at epoch {g}"] = dict(zip(at["trial_id"], at[exp.metric]))
    return sets


def param_importance(exp: Experiment) -> list[Importance]:
    """fANOVA importances (Optuna) on each of ``importance_sets`` that holds at least
    ``MIN_IMPORTANCE_TRIALS`` trials with a finite value, with their spread over bootstrap resamples."""
    dists = optuna_distributions(exp.spec)
    out = []
    for label, values in importance_sets(exp).items() if dists else ():
        rows = _importance_rows(exp, dists, values)
        if len(rows) < MIN_IMPORTANCE_TRIALS:
            continue
        mean = _fanova(rows, dists, exp.goal, n_trees=64)
        if not mean:
            continue
        rng = np.random.default_rng(0)
        boot = pd.DataFrame([_fanova([rows[i] for i in rng.integers(len(rows), size=len(rows))], dists, exp.goal,
                                     n_trees=BOOTSTRAP_TREES) for _ in range(BOOTSTRAP_RESAMPLES)]).reindex(columns=list(mean)).fillna(0.0)
        out.append(Importance(label, len(rows), mean, boot.quantile(0.1).to_dict(), boot.quantile(0.9).to_dict()))
    return out


def _importance_rows(exp: Experiment, dists: dict[str, Any], values: dict[str, float]) -> list[tuple[dict, float]]:
    """(params, value) of the set's trials whose searched values all lie in the space."""
    rows = []
    for _, row in exp.trials[exp.trials["trial_id"].isin(list(values))].iterrows():
        params = {k: to_jsonable(row[f"config/{k}"]) for k in dists if f"config/{k}" in row}
        value = values[row["trial_id"]]
        if len(params) == len(dists) and _finite(value) and _in_space(params, dists):
            rows.append((params, float(value)))
    return rows


def _in_space(params: dict[str, Any], dists: dict[str, Any]) -> bool:
    """False for a value outside its distribution (a --set or enqueued one), which fANOVA rejects."""
    import optuna

    try:
        optuna.trial.create_trial(params=params, distributions=dists, value=0.0)
    except ValueError:
        return False
    return True


def _fanova(rows: list[tuple[dict, float]], dists: dict[str, Any], goal: Objective, n_trees: int) -> dict[str, float]:
    """Importance of the parameters that vary among ``rows`` (the others get none)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    varying = [k for k in dists if len({repr(p[k]) for p, _ in rows}) > 1]
    if not varying:
        return {}
    study = optuna.create_study(direction=goal.direction)
    for params, value in rows:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    imp = optuna.importance.get_param_importances(study, params=varying,
                                                  evaluator=FanovaImportanceEvaluator(n_trees=n_trees, seed=0))
    return {k: float(v) for k, v in imp.items()}


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def plot_importance(exp: Experiment, importance: list[Importance]):
    """Bars: importance on every trial of a set; whiskers: 10th-90th percentile over bootstrap
    resamples. None with too few trials (report.md says so: ``too_few_trials``)."""
    if not importance:
        return None
    plt = _plt()
    params = sorted({p for imp in importance for p in imp.mean}, key=lambda p: -max(i.mean.get(p, 0) for i in importance))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(params) * len(importance) + 2))
    h = 0.8 / len(importance)
    y = np.arange(len(params))
    for i, imp in enumerate(importance):
        mean = np.array([imp.mean.get(p, 0.0) for p in params])
        err = np.array([[max(0.0, m - imp.low.get(p, m)) for p, m in zip(params, mean)],
                        [max(0.0, imp.high.get(p, m) - m) for p, m in zip(params, mean)]])
        ax.barh(y + i * h, mean, height=h, xerr=err, capsize=3, label=f"{imp.label} ({imp.trials})")
    ax.set_yticks(y + h * (len(importance) - 1) / 2, params)
    ax.invert_yaxis()
    ax.set(xlabel=f"fANOVA importance (share of the metric's variance)\nwhiskers: 10th-90th percentile over "
                  f"{BOOTSTRAP_RESAMPLES} bootstrap resamples of the trials", title=f"{exp.name}: parameter importance for {exp.metric}")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def too_few_trials(exp: Experiment) -> str:
    """Why there is no importance figure, in one line."""
    done = int((exp.trials["status"] == TrialStatus.COMPLETED).sum())
    return (f"no parameter importance: fANOVA needs at least {MIN_IMPORTANCE_TRIALS} trials in one set (completed "
            f"trials, or all trials at the first ASHA rung); this sweep has {done} completed of {len(exp.trials)}")


def plot_pareto(exp: Experiment):
    """All trials on the first two objectives; the Pareto front from final.json joined up."""
    front = (exp.final or {}).get("pareto")
    if not front:
        return None
    goals = exp.spec.goals()
    if len(goals) < 2:
        return None
    plt = _plt()
    (m1, d1), (m2, d2) = [(g.metric, g.mode) for g in goals[:2]]
    c1 = f"best_{m1}" if m1 == exp.metric else m1
    c2 = f"best_{m2}" if m2 == exp.metric else m2
    t = exp.trials[exp.trials["status"] != TrialStatus.ERRORED].dropna(subset=[c for c in (c1, c2) if c in exp.trials])
    if c1 not in t or c2 not in t:
        return None
    fig, ax = plt.subplots(figsize=(7, 5.8))
    ax.scatter(t[c2], t[c1], color="0.6", s=18, label="trials")
    f = pd.DataFrame(front).sort_values(m2)
    ax.plot(f[m2], f[m1], "o-", color="tab:red", drawstyle="default" if goals[1].maximize else "steps-post",
            label=f"Pareto front ({len(f)})")
    labels = [ax.annotate(str(r["trial_id"]), (r[m2], r[m1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
              for _, r in f.iterrows()]
    course = (exp.final or {}).get("course")
    ran = t[t["trial_id"] == course["trial_id"]] if course else t.iloc[0:0]
    if len(ran):  # the space's first initial: point, the course's or paper's settings in the shipped spaces
        ax.scatter(ran[c2], ran[c1], marker="*", s=220, color="tab:green", edgecolors="black", zorder=5,
                   label=f"course/paper settings (first initial: point), trial {course['trial_id']}", gid="initial")
    drawn = (exp.final or {}).get("pareto_figures") or {}
    mine = t[t["trial_id"] == drawn.get("trial_id")]
    if len(mine):  # the model whose traversals the report shows
        ax.scatter(mine[c2], mine[c1], s=160, facecolors="none", edgecolors="tab:blue", linewidths=1.5, zorder=6,
                   label=f"figures in the report, trial {drawn['trial_id']}", gid="figures")
    if t[c2].min() > 0 and t[c2].max() / t[c2].min() > 100:
        ax.set_xscale("log")
    ax.set(xlabel=f"{m2} ({d2})", ylabel=f"{c1} ({d1})", title=f"{exp.name}: {m1} against {m2}")
    # below the axes: inside, the legend hid trials wherever it went
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _separate_labels(fig, labels)
    return fig


def _separate_labels(fig, labels: list) -> None:
    """Move each label down a line at a time until it overlaps none placed before it: the ids of
    neighbouring Pareto trials were drawn over each other."""
    renderer = fig.canvas.get_renderer()
    placed: list = []
    for label in labels:
        for _ in range(2 * len(labels)):
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
            label.xyann = (label.xyann[0], label.xyann[1] - box.height * 72 / fig.dpi - 1)
        placed.append(label.get_window_extent(renderer))


def plot_compared(exp: Experiment):
    """``compare_by``: per value, its best validation value in the sweep (one seed), the mean and
    standard deviation of that config's re-runs, and its test value (for comparison only)."""
    compared = (exp.final or {}).get("compared")
    if not compared:
        return None
    plt = _plt()
    rows = compared["rows"]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(rows) + 2), 5.2))
    best = [r.get("best", np.nan) for r in rows]
    ax.scatter(xs - 0.18, best, marker="_", s=400, linewidths=2.5, color="tab:blue",
               label=f"best {exp.metric} in the sweep (one seed)", gid="best")
    seeded = [i for i, r in enumerate(rows) if "mean" in r]
    if seeded:
        k = len(rows[seeded[0]]["values"])
        ax.errorbar(xs[seeded], [rows[i]["mean"] for i in seeded], yerr=[rows[i]["std"] for i in seeded],
                    fmt="o", color="tab:blue", capsize=6, label=f"that config re-run: mean +- std ({k} seeds)",
                    gid="seeds")
    tested = [i for i, r in enumerate(rows) if r.get("test") is not None]
    if tested:
        ax.scatter(xs[tested] + 0.18, [rows[i]["test"] for i in tested], marker="D", facecolors="none",
                   edgecolors="tab:red", s=50, zorder=5, label=f"its {compared['test_metric']} (for comparison, "
                   "not used for selection)", gid="test")
    ax.set_xticks(xs, [f"{r['value']}\n{r['trials']} trials, {r['epochs']} epochs" for r in rows], fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set(ylabel=exp.metric, title=f"{exp.name}: compared by {compared['param']} (equal shares of the trials)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
