"""The two shared answers: which value is better (``Objective``), how a trial ended (``TrialStatus``)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dlb_tune.experiment import live_status
from dlb_tune.objective import ENDED, Objective, TrialStatus

UP, DOWN = Objective("val_acc", "max"), Objective("val_nelbo", "min")


def test_better_best_and_reached_follow_the_mode():
    assert UP.better(0.9, 0.8) and not UP.better(0.8, 0.9) and not UP.better(0.8, 0.8) and UP.better(0.1, None)
    assert DOWN.better(10.0, 12.0) and not DOWN.better(12.0, 10.0)
    assert UP.best([0.5, math.nan, 0.9, None]) == 0.9 and DOWN.best([7.0, 6.5, math.nan]) == 6.5
    assert UP.best([math.nan]) is None and DOWN.best([]) is None
    assert UP.reached(0.98, 0.98) and not UP.reached(0.97, 0.98)
    assert DOWN.reached(6900.0, 7000.0) and not DOWN.reached(7100.0, 7000.0)
    assert (UP.direction, DOWN.direction, UP.at_least, DOWN.at_least) == ("maximize", "minimize", ">=", "<=")


def test_order_best_first_and_running_best():
    frame = pd.DataFrame({"v": [0.2, None, 0.9, 0.5]})
    assert UP.sort(frame, "v")["v"].tolist()[:3] == [0.9, 0.5, 0.2] and pd.isna(UP.sort(frame, "v")["v"].iloc[-1])
    assert DOWN.sort(frame, "v")["v"].tolist()[:3] == [0.2, 0.5, 0.9]
    series = pd.Series([3.0, 1.0, 2.0, 0.5])
    assert UP.running_best(series).tolist() == [3.0, 3.0, 3.0, 3.0]
    assert DOWN.running_best(series).tolist() == [3.0, 1.0, 1.0, 0.5]
    assert UP.best_index(series) == 0 and DOWN.best_index(series) == 3


def test_a_mode_other_than_max_or_min_is_refused():
    with pytest.raises(ValueError, match="'max' or 'min'"):
        Objective("val_acc", "maximum")


@pytest.mark.parametrize("facts, status", [
    (dict(epochs=3, errored=True), TrialStatus.ERRORED),
    (dict(epochs=1, ended=False), TrialStatus.RUNNING),
    (dict(epochs=0, ended=False, queued=True), TrialStatus.PENDING),
    (dict(epochs=3), TrialStatus.COMPLETED),
    (dict(epochs=1, stopped=True, budget_hit=True), TrialStatus.STOPPED_EARLY),  # ASHA's stop wins
    (dict(epochs=2), TrialStatus.STOPPED_EARLY),  # ended before the end, nothing else to blame
    (dict(epochs=2, budget_hit=True), TrialStatus.CUT_BY_BUDGET),
    (dict(epochs=2, interrupted=True), TrialStatus.INCOMPLETE),
    (dict(epochs=0), TrialStatus.CUT_BY_BUDGET),  # never reported, not stopped by ASHA
])
def test_one_rule_decides_how_a_trial_ended(facts, status):
    assert TrialStatus.classify(max_epochs=3, **facts) is status


@pytest.mark.parametrize("ray_status, epochs, status", [
    ("ERROR", 1, TrialStatus.ERRORED), ("TERMINATED", 3, TrialStatus.COMPLETED),
    ("TERMINATED", 1, TrialStatus.STOPPED_EARLY), ("PENDING", 0, TrialStatus.PENDING),
    ("PAUSED", 1, TrialStatus.PENDING), ("RUNNING", 1, TrialStatus.RUNNING), (None, 0, TrialStatus.RUNNING),
])
def test_a_running_sweeps_trials_are_read_with_the_same_rule(ray_status, epochs, status):
    assert live_status(ray_status, epochs, max_epochs=3) is status


def test_the_words_are_the_results_table_s():
    assert [s.value for s in ENDED] == ["completed", "stopped_early", "cut_by_budget", "incomplete", "errored"]
    assert TrialStatus("stopped_early") is TrialStatus.STOPPED_EARLY and TrialStatus.STOPPED_EARLY == "stopped_early"
    assert TrialStatus.STOPPED_EARLY.words == "stopped early" and f"{TrialStatus.ERRORED}" == "errored"
