"""The report's figures, checked from the Figure objects the plotting functions return (lines,
colours, ticks, axis limits, texts), not from pixels.

The finished real sweep (tests/finished_sweep.py: 6 FCN trials, ASHA rungs at epochs 1 and 2)
covers what a small sweep draws; parameter importance needs at least 10 trials, so its ranking is
checked on a synthetic trial table of the emotion space (14 searched parameters), where the
metric is made to depend on two of them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from finished_sweep import finished_sweep
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_rgba
from matplotlib.container import BarContainer
from optuna.distributions import CategoricalDistribution

from dlb_tune.experiment import Experiment, load_experiment
from dlb_tune.figures import (MAX_PARALLEL_AXES, MIN_IMPORTANCE_TRIALS, asha_rungs, best_trial_id, optuna_distributions,
                              param_importance, plot_best_so_far, plot_importance, plot_metric_vs_epoch, plot_parallel,
                              too_few_trials)
from dlb_tune.report_numbers import time_to_best_val
from dlb_tune.show import seconds
from dlb_tune.space import default_space_file, load_space


@pytest.fixture(scope="module")
def exp(tmp_path_factory, data_dir, ray_local):
    return load_experiment(finished_sweep(tmp_path_factory, data_dir).exp)


def _trial_lines(ax):
    return {ln.get_gid().removeprefix("trial "): ln for ln in ax.lines if (ln.get_gid() or "").startswith("trial ")}


def _legend(ax):
    return {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}


def test_each_trial_has_one_colour_from_its_best_value_with_a_colorbar(exp):
    fig = plot_metric_vs_epoch(exp)
    ax, cbar_ax = fig.axes
    lines = _trial_lines(ax)
    assert set(lines) == set(exp.trials["trial_id"][exp.trials["epochs"] > 0])
    best = exp.trials.set_index("trial_id")["best_val_acc"]
    assert cbar_ax.get_ylim() == pytest.approx((best.min(), best.max()))  # the colorbar spans the trials
    scale = Normalize(best.min(), best.max())
    for trial_id, line in lines.items():
        expected = colormaps["viridis"](scale(best[trial_id]))  # val_acc: max, so yellow is good
        assert to_rgba(line.get_color())[:3] == pytest.approx(expected[:3]), trial_id
        ends = [ln for ln in ax.lines if ln.get_gid() == f"end {trial_id}"]
        assert all(to_rgba(e.get_color())[:3] == pytest.approx(expected[:3]) for e in ends)
    # the legend's best-trial entry has the best trial's colour, and its line is the thickest
    best_id = best_trial_id(exp)
    [(label, handle)] = [(k, h) for k, h in _legend(ax).items() if k.startswith("best trial")]
    assert best_id in label and to_rgba(handle.get_color()) == pytest.approx(to_rgba(lines[best_id].get_color()))
    assert lines[best_id].get_linewidth() > max(ln.get_linewidth() for t, ln in lines.items() if t != best_id)


def test_stopped_trials_dashed_and_faded_with_a_legend_entry(exp):
    ax = plot_metric_vs_epoch(exp).axes[0]
    status = exp.trials.set_index("trial_id")["status"]
    for trial_id, line in _trial_lines(ax).items():
        if status[trial_id] == "completed":
            assert line.get_linestyle() == "-" and line.get_alpha() > 0.9
        else:
            assert line.get_linestyle() == "--" and line.get_alpha() <= 0.5
    stopped = int((status == "stopped_early").sum())
    assert stopped >= 1
    handle = _legend(ax)[f"stopped early by ASHA ({stopped})"]
    assert handle.get_linestyle() == "--" and handle.get_marker() == "x"
    assert len([ln for ln in ax.lines if (ln.get_gid() or "").startswith("end ") and ln.get_marker() == "x"]) == stopped


def test_rungs_drawn_where_asha_had_them_and_epoch_ticks_are_integers(exp):
    ax = plot_metric_vs_epoch(exp).axes[0]
    rungs = [ln.get_xdata()[0] for ln in ax.lines if ln.get_gid() == "rung"]
    assert rungs == asha_rungs(exp.spec) == [1, 2]  # grace 1, reduction 2, 3 epochs
    assert "ASHA rungs (epochs 1, 2)" in _legend(ax)
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert shown and all(float(t).is_integer() for t in shown), shown
    # a FIFO sweep had no rungs: none drawn, none in the legend
    fifo = Experiment(exp.path, exp.spec, exp.trials, exp.final, {**exp.sweep, "scheduler": "fifo"})
    ax = plot_metric_vs_epoch(fifo).axes[0]
    assert not [ln for ln in ax.lines if ln.get_gid() == "rung"]
    assert not [k for k in _legend(ax) if "rung" in k]


@pytest.mark.parametrize("plot", [plot_metric_vs_epoch, plot_best_so_far])
def test_target_is_inside_the_axis_when_listed(exp, plot):
    """The fixture's target (the shipped space's) lies above every validation value its trials reached."""
    assert exp.trials["best_val_acc"].max() < exp.spec.target < 1
    ax = plot(exp).axes[0]
    lo, hi = ax.get_ylim()
    assert lo < exp.spec.target < hi
    assert any(k.startswith(f"target {exp.spec.target:g} ") for k in _legend(ax))
    # and far below every value: still shown
    low = Experiment(exp.path, dataclasses.replace(exp.spec, target=0.01), exp.trials, exp.final, exp.sweep)
    lo, hi = plot(low).axes[0].get_ylim()
    assert lo < 0.01 < hi


def test_epochs_are_placed_by_the_trials_own_clocks(exp):
    """Epochs shorter than a second: Ray's whole-second timestamps would put several at one time."""
    hist = exp.history()
    assert hist["epoch_s"].median() < 1
    for trial_id, t in hist.groupby("trial_id"):
        times = t.sort_values("epoch")["t_s"]
        assert times.is_monotonic_increasing and times.is_unique, (trial_id, times.tolist())
    assert not hist["t_s"].map(float.is_integer).all()


def test_best_so_far_marks_when_the_winners_validation_level_was_reached(exp):
    ax = plot_best_so_far(exp).axes[0]
    hit = time_to_best_val(exp)
    hist = exp.history()
    assert hit == pytest.approx(hist.loc[hist["val_acc"] == hist["val_acc"].max(), "t_s"].min())
    [label] = [k for k in _legend(ax) if k.startswith("winner's validation level")]
    assert f"at {seconds(hit)}" in label and not [k for k in _legend(ax) if "target" in k and "reached" in k]


def test_parallel_axis_labels_are_drawn_over_every_line_the_winners_included(exp):
    ax = plot_parallel(exp, []).axes[0]
    assert best_trial_id(exp) in _trial_lines(ax)  # the red winner's line is the topmost line
    ticks = [t for t in ax.texts if t.get_gid() == "axis tick"]
    assert ticks and max(ln.get_zorder() for ln in ax.lines) < min(t.get_zorder() for t in ticks)
    assert all(t.get_bbox_patch() is not None and t.get_bbox_patch().get_alpha() >= 0.8 for t in ticks)


def test_too_few_trials_for_importance_draw_no_figure_and_say_why(exp):
    assert len(exp.trials) < MIN_IMPORTANCE_TRIALS
    assert param_importance(exp) == []
    assert plot_importance(exp, []) is None  # not a picture of a sentence
    assert f"fANOVA needs at least {MIN_IMPORTANCE_TRIALS} trials" in too_few_trials(exp)


# --- 14 synthetic trials of the emotion space: the metric depends on lr and cell only ---------


def _draw(dist, rng):
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[rng.integers(len(dist.choices))]
    return float(rng.uniform(dist.low, dist.high))


def synthetic_emotion(n: int, path) -> Experiment:
    spec = load_space(default_space_file("emotion"))
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        config = {**spec.constants(), **{name: _draw(d, rng) for name, d in optuna_distributions(spec).items()}}
        config["lr"] = float(np.exp(rng.uniform(np.log(5e-4), np.log(1e-2))))
        config["cell"] = ["rnn_tanh", "rnn_relu", "gru", "lstm"][i % 4]
        value = 0.4 + 0.1 * np.log10(config["lr"] / 5e-4) + (0.2 if config["cell"] in ("gru", "lstm") else 0)
        rows.append({"trial_id": f"t{i:02d}", "status": "completed", "epochs": spec.max_epochs,
                     "best_val_acc": value + rng.normal(0, 0.003),
                     **{f"config/{k}": v for k, v in config.items()}})
    trials = pd.DataFrame(rows)
    return Experiment(path, spec, trials, None, {"scheduler": "asha"},
                      _history=pd.DataFrame(columns=["trial_id", "status", "epoch", "t_s", "val_acc"]))


@pytest.fixture(scope="module")
def emotion(tmp_path_factory):
    exp = synthetic_emotion(14, tmp_path_factory.mktemp("emotion"))
    return exp, param_importance(exp)


def test_importance_ranks_the_parameters_the_metric_depends_on_with_their_spread(emotion, tmp_path):
    exp, importance = emotion
    [imp] = importance
    assert imp.trials == 14 and imp.label.startswith("completed trials")
    ranked = sorted(imp.mean, key=imp.mean.get, reverse=True)
    assert set(ranked[:2]) == {"lr", "cell"}, imp.mean
    assert sum(imp.mean.values()) == pytest.approx(1.0, abs=1e-6)
    for p, m in imp.mean.items():
        assert imp.low[p] <= imp.high[p]
    assert imp.high["lr"] > imp.low["lr"]  # resamples disagree somewhat: a spread, not a point
    ax = plot_importance(exp, [imp]).axes[0]
    bars = ax.patches
    assert len(bars) == len(imp.mean)
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ranked[:2]
    [bar_set] = [c for c in ax.containers if isinstance(c, BarContainer)]
    [whiskers] = bar_set.errorbar.lines[2]  # one segment per bar: the bootstrap spread
    lr = ranked.index("lr")
    assert whiskers.get_segments()[lr][:, 0] == pytest.approx([imp.low["lr"], imp.high["lr"]])
    # one trial fewer than the 10: no importance at all
    assert param_importance(synthetic_emotion(9, tmp_path)) == []


def test_parallel_coordinates_keep_the_most_important_axes_and_readable_labels(emotion):
    exp, importance = emotion
    fig = plot_parallel(exp, importance)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(exp.spec.searched()) + 1 > MAX_PARALLEL_AXES >= len(labels)
    assert labels[-1] == "best val_acc" and set(labels[:2]) == {"lr", "cell"}
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    for a, b in zip(boxes, boxes[1:]):
        assert not a.overlaps(b), (a, b)
    width, height = fig.get_size_inches() * fig.dpi
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= width and b.y1 <= height for b in boxes)  # inside the figure

