"""What to make of a finished sweep (``dlb_tune.experiment`` reads it back): report, best config,
comparisons.

Everything here works from the experiment folder alone (``results.parquet``, ``final.json``,
``space.yaml``, ``sweep.json``, ``trial_<id>/progress.csv``): no Ray, no data.

Wall-clock times are seconds since the sweep started: the earliest trial start, i.e. the first
result's ``timestamp`` less its ``time_this_iter_s`` (Ray's timestamps are whole seconds).
"Time to the winner's validation level" is the first such second at which any trial's validation
value of the sweep metric was as good as the winner's best validation value. It is a validation
figure: the space file's ``target`` is judged on the test split, once, and is never set against
validation values here.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlb_tune.experiment import REPORT_DIR, REPORT_FILE, TEST_REPORT_DIR, Experiment, ReportError, to_jsonable, write_text
from dlb_tune.plan import rungs
from dlb_tune.space import Distribution, SweepSpec

# matplotlib and Optuna are imported inside the functions that draw and rank, to keep start-up fast.

STATUS_STYLE = {  # how each trial status is drawn: line style, colour, marker at its last epoch
    "completed": dict(ls="-", color=None, marker=None),
    "stopped_early": dict(ls="--", color="0.55", marker="x"),
    "cut_by_budget": dict(ls="-.", color="0.35", marker="|"),
    "incomplete": dict(ls=":", color="0.35", marker="|"),
    "errored": dict(ls=":", color="tab:red", marker="X"),
}


# --- numbers ----------------------------------------------------------------------------------


def time_to_best_val(exp: Experiment) -> float | None:
    """First second since sweep start at which any trial's validation value of the sweep metric
    reached the winner's best validation value (the sweep's best)."""
    hist = exp.history()
    if hist.empty or exp.metric not in hist or hist[exp.metric].notna().sum() == 0:
        return None
    level = exp.better(hist[exp.metric].dropna())
    hit = hist[[exp.reached(v, level) for v in hist[exp.metric]]]
    return float(hit["t_s"].min()) if len(hit) else None


def best_so_far(exp: Experiment) -> pd.DataFrame:
    """``t_s`` and the best sweep-metric value seen by then, one row per result."""
    hist = exp.history().dropna(subset=[exp.metric])
    values = hist[exp.metric].cummax() if exp.spec.mode == "max" else hist[exp.metric].cummin()
    return pd.DataFrame({"t_s": hist["t_s"].to_numpy(), "best": values.to_numpy()})


def summary_row(exp: Experiment) -> dict[str, Any]:
    """One sweep in numbers: what ``compare`` lays side by side."""
    final, t = exp.final or {}, exp.trials
    best_col = f"best_{exp.metric}"
    best = exp.better(t[best_col].dropna()) if best_col in t and t[best_col].notna().any() else None
    test_metric = final.get("test_metric") or "test_" + exp.metric.removeprefix("val_")
    counts = t["status"].value_counts() if len(t) else pd.Series(dtype=int)
    # validation figures first, the test split's verdict last: never one beside the other
    return {
        "name": exp.name, "task": exp.spec.task, "search": final.get("search", exp.sweep.get("search")),
        "scheduler": final.get("scheduler", exp.sweep.get("scheduler")), "metric": exp.metric,
        "best_val": best, "time_to_best_val_s": time_to_best_val(exp),
        "trials": len(t), "completed": int(counts.get("completed", 0)),
        "stopped_early": int(counts.get("stopped_early", 0)), "cut_by_budget": int(counts.get("cut_by_budget", 0)),
        "incomplete": int(counts.get("incomplete", 0)), "errored": int(counts.get("errored", 0)),
        "trial_epochs": int(t["epochs"].sum()) if "epochs" in t else None, "wall_s": final.get("wall_s"),
        "test": (final.get("test") or {}).get(test_metric), "test_metric": test_metric,
        "target": exp.spec.target, "target_met": final.get("target_met"),
    }


def compare(exps: list[Experiment]) -> pd.DataFrame:
    return pd.DataFrame([summary_row(e) for e in exps])


# --- best config --------------------------------------------------------------------------------


def best_config(exp: Experiment) -> dict[str, Any]:
    """The winner's full config: final.json's, else the top row of results.parquet."""
    if exp.final and exp.final.get("best"):
        return dict(exp.final["best"]["config"])
    best_col = f"best_{exp.metric}"
    ok = exp.trials.dropna(subset=[best_col]) if best_col in exp.trials else exp.trials.iloc[0:0]
    if ok.empty:
        raise ReportError(f"{exp.path}: no trial reported {exp.metric}; there is no best config")
    row = ok.sort_values(best_col, ascending=exp.spec.mode == "min").iloc[0]
    return {k.removeprefix("config/"): to_jsonable(v) for k, v in row.items() if k.startswith("config/")}


def best_yaml(exp: Experiment) -> str:
    """A search-space file with every parameter fixed to the winner's value (``--space`` reads it)."""
    final = exp.final or {}
    best = final.get("best") or {}
    head = [f"best trial {best.get('trial_id', '?')} of sweep {exp.name}: "
            f"{exp.metric} {_fmt(best.get(exp.metric))} at epoch {best.get('epoch', '?')}"]
    test = final.get("test") or {}
    if final.get("test_metric") in test:
        head.append(f"{final['test_metric']} {_fmt(test[final['test_metric']])} (test split, evaluated once)")
    head.append(f"checkpoint: {best.get('checkpoint') or exp.checkpoint(best.get('trial_id')) or 'none'}")
    return fixed_space_yaml(exp, best_config(exp), head)


def fixed_space_yaml(exp: Experiment, config: dict[str, Any], comments: list[str]) -> str:
    """The sweep's space file with ``params`` replaced by ``config`` (constants only), 1 sample."""
    import yaml

    spec = exp.spec
    doc: dict[str, Any] = {"task": spec.task, "metric": spec.metric, "mode": spec.mode}
    if spec.target is not None:
        doc["target"] = spec.target
    doc.update(max_epochs=spec.max_epochs, grace_period=spec.grace_period,
               reduction_factor=spec.reduction_factor, num_samples=1)
    doc["params"] = {k: to_jsonable(v) for k, v in config.items()}
    return "".join(f"# {_one_line(c)}\n" for c in comments) + yaml.safe_dump(doc, sort_keys=False)


def _one_line(text: str) -> str:
    """A comment stays one line: a line break in final.json's values (a checkpoint path) would
    start YAML of its own. Such characters are shown escaped, as Python writes them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


# --- figures ------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
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
        style = STATUS_STYLE.get(status, STATUS_STYLE["incomplete"])
        color = cmap(norm(_trial_best(exp, trial_id)))
        faded = status != "completed"
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
    return plt.get_cmap("viridis" if exp.spec.mode == "max" else "viridis_r"), plt.Normalize(lo, hi)


def _trial_best(exp: Experiment, trial_id: str) -> float:
    best_col = f"best_{exp.metric}"
    row = exp.trials.loc[exp.trials["trial_id"] == trial_id]
    value = row[best_col].iloc[0] if best_col in row and len(row) else None
    return float("nan") if value is None or pd.isna(value) else float(value)


STATUS_LABEL = {"stopped_early": "stopped early by ASHA", "cut_by_budget": "cut by the time budget"}


def _status_handles(exp: Experiment) -> list:
    """One legend entry per status present: its line style and end marker (colour is the value)."""
    from matplotlib.lines import Line2D

    handles = []
    for status, style in STATUS_STYLE.items():
        n = int((exp.trials["status"] == status).sum())
        if n:
            label = STATUS_LABEL.get(status, status.replace("_", " "))
            handles.append(Line2D([], [], ls=style["ls"], color="0.35", alpha=1.0 if status == "completed" else 0.6,
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
    stopped = hist["status"] == "stopped_early"
    ax.scatter(hist.loc[~stopped, "t_s"], hist.loc[~stopped, exp.metric], s=10, color="0.6", label="a trial's epoch")
    ax.scatter(hist.loc[stopped, "t_s"], hist.loc[stopped, exp.metric], s=14, marker="x", color="0.6",
               label="epoch of a trial ASHA stopped")
    ax.step(curve["t_s"], curve["best"], where="post", color="tab:blue", lw=2, label="best so far")
    hit = time_to_best_val(exp)
    if hit is not None:
        ax.axvline(hit, color="tab:blue", lw=1, ls=":", label=f"winner's validation level first reached at {hit:.0f}s")
    ax.set(xlabel="seconds since sweep start", ylabel=exp.metric, title=f"{exp.name}: best {exp.metric} over time")
    _clip_to_spread(ax, hist[exp.metric], exp.spec.mode)
    if exp.spec.target is not None:
        ax.axhline(exp.spec.target, color="tab:green", ls="--", lw=1, label=f"target {exp.spec.target:g} (judged on test)")
        _show_value(ax, exp.spec.target)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _clip_to_spread(ax, values: pd.Series, mode: str) -> None:
    """Keep the interesting end in view: a diverged trial should not flatten everyone else."""
    v = values.dropna()
    if len(v) < 4:
        return
    lo, hi = (v.quantile(0.1), v.max()) if mode == "max" else (v.min(), v.quantile(0.9))
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
        early = row["status"] != "completed"
        if row["trial_id"] == best_id:
            ax.plot(xs, ys, color="tab:red", lw=2.6, zorder=5, gid=f"trial {row['trial_id']}")
        else:
            ax.plot(xs, ys, color=cmap(norm(m.iloc[i])), lw=1.0 if early else 1.8, ls="--" if early else "-",
                    alpha=0.5 if early else 0.9, gid=f"trial {row['trial_id']}")
    for x, tick in zip(xs, ticks):
        ax.axvline(x, color="0.3", lw=0.8)
        for y, label in tick:
            ax.text(x + 0.03, y, label, fontsize=7, va="center")
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
    done = t[t["status"] == "completed"]
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
        mean = _fanova(rows, dists, exp.spec.mode, n_trees=64)
        if not mean:
            continue
        rng = np.random.default_rng(0)
        boot = pd.DataFrame([_fanova([rows[i] for i in rng.integers(len(rows), size=len(rows))], dists, exp.spec.mode,
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


def _fanova(rows: list[tuple[dict, float]], dists: dict[str, Any], mode: str, n_trees: int) -> dict[str, float]:
    """Importance of the parameters that vary among ``rows`` (the others get none)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    varying = [k for k in dists if len({repr(p[k]) for p, _ in rows}) > 1]
    if not varying:
        return {}
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
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
    done = int((exp.trials["status"] == "completed").sum())
    return (f"no parameter importance: fANOVA needs at least {MIN_IMPORTANCE_TRIALS} trials in one set (completed "
            f"trials, or all trials at the first ASHA rung); this sweep has {done} completed of {len(exp.trials)}")


def plot_pareto(exp: Experiment):
    """All trials on the first two objectives; the Pareto front from final.json joined up."""
    front = (exp.final or {}).get("pareto")
    if not front:
        return None
    pairs = exp.spec.objective_pairs()
    if len(pairs) < 2:
        return None
    plt = _plt()
    (m1, d1), (m2, d2) = pairs[:2]
    c1 = f"best_{m1}" if m1 == exp.metric else m1
    c2 = f"best_{m2}" if m2 == exp.metric else m2
    t = exp.trials[exp.trials["status"] != "errored"].dropna(subset=[c for c in (c1, c2) if c in exp.trials])
    if c1 not in t or c2 not in t:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(t[c2], t[c1], color="0.6", s=18, label="trials")
    f = pd.DataFrame(front).sort_values(m2)
    ax.plot(f[m2], f[m1], "o-", color="tab:red", drawstyle="steps-post" if d2 == "min" else "default",
            label=f"Pareto front ({len(f)})")
    for _, r in f.iterrows():
        ax.annotate(str(r["trial_id"]), (r[m2], r[m1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if t[c2].min() > 0 and t[c2].max() / t[c2].min() > 100:
        ax.set_xscale("log")
    ax.set(xlabel=f"{m2} ({d2})", ylabel=f"{c1} ({d1})", title=f"{exp.name}: {m1} against {m2}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --- report.md ---------------------------------------------------------------------------------


def write_report(exp: Experiment) -> tuple[Path, list[Path]]:
    """``report.md`` and its figures (``report/*.png``) in the experiment folder."""
    fig_dir = exp.path / REPORT_DIR
    shutil.rmtree(fig_dir, ignore_errors=True)
    fig_dir.mkdir()
    importance = param_importance(exp)
    plots = {
        "metric_vs_epoch": plot_metric_vs_epoch(exp),
        "best_so_far": plot_best_so_far(exp),
        "parallel_coordinates": plot_parallel(exp, importance),
        "param_importance": plot_importance(exp, importance),
        "pareto_front": plot_pareto(exp),
    }
    figures = {k: _save(fig, fig_dir / f"{k}.png") for k, fig in plots.items() if fig is not None}
    task_figs = sorted((exp.path / TEST_REPORT_DIR).glob("*.png"))
    path = exp.path / REPORT_FILE
    write_text(path, _markdown(exp, figures, importance, task_figs))
    return path, list(figures.values()) + task_figs


def upload_report(exp: Experiment, files: list[Path], uri: str) -> int:
    """The report of a stored sweep, written into its local copy, sent to the store beside the
    results (else it stays on this machine); an earlier report's figures go, as they do locally."""
    from dlb_tune import storage

    fs, root = storage.filesystem(uri)
    try:
        fs.delete_dir_contents(f"{root}/{REPORT_DIR}", missing_dir_ok=True)
    except OSError as e:
        raise storage.StorageError(f"{storage.shown(uri)}: cannot replace {REPORT_DIR}/: {e}") from None
    return storage.upload(exp.path, uri, files)


def _course_section(exp: Experiment) -> list[str]:
    """The space's first ``initial:`` point (the course's configuration in the default spaces),
    run on the same budget as the winner."""
    course = (exp.final or {}).get("course")
    if not course:
        return []
    status = course["status"].replace("_", " ")
    return ["## Course configuration (the space's first `initial:` point)", "",
            f"Trial `{course['trial_id']}`, {exp.metric} {_fmt(course.get(exp.metric))} at epoch {course.get('epoch')} "
            f"({status} after {course['epochs']} epochs).", "",
            *_md_table(["parameter", "value"], [[k, _fmt(v)] for k, v in course["config"].items()]), ""]


def _markdown(exp: Experiment, figures: dict[str, Path], importance, task_figs: list[Path]) -> str:
    final = exp.final or {}
    lines = [f"# Sweep `{exp.name}`: task `{exp.spec.task}`", ""]
    lines += _headline(exp) + [""]
    row = summary_row(exp)
    lines += [
        f"- search `{row['search']}`, scheduler `{row['scheduler']}`, metric `{exp.metric}` ({exp.spec.mode}), "
        f"up to {exp.spec.max_epochs} epochs",
        f"- trials: {row['trials']} ({row['completed']} completed, {row['stopped_early']} stopped early by ASHA, "
        f"{row['cut_by_budget']} cut by the time budget, {row['incomplete']} incomplete, {row['errored']} errored); "
        f"{row['trial_epochs']} trial-epochs",
        f"- wall time: {_fmt(row['wall_s'])} s; the winner's validation level ({_fmt(row['best_val'])}) was "
        f"first reached after " + ("-" if row["time_to_best_val_s"] is None else f"{row['time_to_best_val_s']:.0f} s"),
        "",
    ]
    best = final.get("best")
    if best:
        lines += ["## Best configuration", "",
                  f"Trial `{best['trial_id']}`, {exp.metric} {_fmt(best.get(exp.metric))} at epoch {best.get('epoch')}; "
                  f"checkpoint `{best.get('checkpoint')}`. `dlb-tune best {exp.name}` prints it as a space file.", ""]
        lines += _md_table(["parameter", "value"], [[k, _fmt(v)] for k, v in best["config"].items()]) + [""]
    lines += _course_section(exp) + _plan_section(exp) + _seeds_section(exp)
    titles = {
        "metric_vs_epoch": f"{exp.metric} per epoch (dashed, ending in x: stopped early by ASHA; grey verticals: ASHA rungs)",
        "best_so_far": "Best so far against wall time",
        "parallel_coordinates": "Parameters against the metric",
        "param_importance": "Parameter importance (fANOVA)",
        "pareto_front": "Pareto front",
    }
    for key, path in figures.items():
        lines += [f"## {titles[key]}", "", f"![{key}]({REPORT_DIR}/{path.name})", ""]
        if key == "param_importance":
            lines += [f"- {imp.label} ({imp.trials}): " + ", ".join(
                f"{k} {v:.2f} ({imp.low[k]:.2f}-{imp.high[k]:.2f})" for k, v in imp.mean.items()) for imp in importance]
            lines.append("")
    if "param_importance" not in figures:
        lines += [f"## {titles['param_importance']}", "", too_few_trials(exp) + ".", ""]
    if task_figs:
        lines += ["## The task's figures (best checkpoint, test split)", ""]
        lines += [f"![{p.stem}]({TEST_REPORT_DIR}/{p.name})" for p in task_figs] + [""]
    lines += ["## Trials", ""] + _trials_table(exp) + [""]
    return "\n".join(lines)


def _headline(exp: Experiment) -> list[str]:
    final = exp.final or {}
    test, metric = final.get("test") or {}, final.get("test_metric")
    if exp.in_progress:  # "running: N of M trials finished", from what the trials wrote so far
        return [f"**{exp.progress_line()}**; the test split is evaluated once, when the sweep ends"]
    if not test:
        reason = final.get("test_error") or "no test evaluation in final.json (interrupted sweep?)"
        return [f"**Test result: none** ({reason})"]
    value = test.get(metric) if metric else None
    if value is None or exp.spec.target is None:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in test.items() if isinstance(v, (int, float)))
        return [f"**Test result** (best checkpoint, evaluated once): {shown}; no target set"]
    op = ">=" if exp.spec.mode == "max" else "<="
    verdict = "**met**" if final.get("target_met") else "**NOT met**"
    return [f"**Test result: {metric} = {value:.4f}** against target {op} {exp.spec.target}: {verdict} "
            f"(best checkpoint, evaluated once on the test split)"]


def _plan_section(exp: Experiment) -> list[str]:
    plan = exp.plan()
    if not plan:
        return []
    row = summary_row(exp)
    hist = exp.history()
    actual_epoch = float(hist["epoch_s"].mean()) if "epoch_s" in hist and len(hist) else None
    est = plan["estimate"]
    rows = [
        ["trial-epochs", f"{est['trial_epochs']:.0f} ({est['trial_epochs_p10']:.0f}-{est['trial_epochs_p90']:.0f})",
         _fmt(row["trial_epochs"])],
        ["seconds per epoch (mean)", f"{est['epoch_s_mean']:.2f}", _fmt(actual_epoch)],
        ["wall time, s", f"{est['wall_s']:.0f} ({est['wall_s_p10']:.0f}-{est['wall_s_p90']:.0f})",
         "-" if row["wall_s"] is None else f"{row['wall_s']:.1f}"],
    ]
    return ["## Plan against actual", "",
            f"`dlb-tune plan` before the sweep ({plan.get('created', '?')}; {len(plan.get('corners', []))} "
            f"calibrated corner(s), {plan['concurrency']} trial(s) at a time). Ranges: 10th-90th percentile "
            f"of the ASHA simulation.", ""] + _md_table(["", "estimate", "actual"], rows) + [""]


def _seeds_section(exp: Experiment) -> list[str]:
    seeds = exp.seeds()
    if not seeds:
        return []
    head = ["rank", "original trial", f"mean {exp.metric}", "std", "min", "max", "seeds", "config"]
    rows = [[r["rank"], r["trial_id"], f"{r['mean']:.4f}", f"{r['std']:.4f}", f"{r['min']:.4f}", f"{r['max']:.4f}",
             len(r["values"]), " ".join(f"{k}={_fmt(v)}" for k, v in r["searched"].items())] for r in seeds["ranking"]]
    return [f"## Top configurations re-run with {seeds['seeds']} seeds", "",
            f"Best validation {exp.metric} of each seed's run, ranked by mean.", ""] + _md_table(head, rows) + [""]


def _trials_table(exp: Experiment, top: int = 20) -> list[str]:
    best_col = f"best_{exp.metric}"
    params = exp.spec.searched()
    head = ["trial", "status", "epochs", best_col] + params
    rows = []
    for _, r in exp.trials.head(top).iterrows():
        # numpy's float64 is a float and its integers print as ints: _fmt takes them as they are
        rows.append([r["trial_id"], r["status"], r["epochs"], _fmt(r.get(best_col))]
                    + [_fmt(r.get(f"config/{p}")) for p in params])
    more = [f"({len(exp.trials) - top} more in results.parquet)"] if len(exp.trials) > top else []
    return _md_table(head, rows) + more


def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v):
        return str(v).replace("|", "\\|")

    return (["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])
