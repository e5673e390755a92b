"""The per-trial table in process: each way a trial can end gets its status, best value and error.

The sweeps in test_promises.py check the same promises end to end through Ray; these run in
the test process, so mutation testing (``python -m bench mutation results``) can see them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pytest

from dlb_tune.finish import initial_trial, trial_table
from dlb_tune.objective import Objective, pareto_front
from dlb_tune.show import error_line
from dlb_tune.space import parse_space

MAX_EPOCHS = 3


def spec(mode: str = "max"):
    return parse_space({"task": "fcn", "metric": "val_acc" if mode == "max" else "val_loss", "mode": mode,
                        "max_epochs": MAX_EPOCHS, "params": {"lr": {"loguniform": [0.01, 0.3]}}})


@dataclass
class Result:
    """What trial_table reads of a Tune ``Result``."""

    trial_id: str
    values: list[float]  # the metric, one per epoch reported
    error: BaseException | None = None
    config: dict = field(default_factory=lambda: {"lr": 0.1})
    metric: str = "val_acc"

    @property
    def path(self) -> str:
        return f"/runs/s/trial_{self.trial_id}"

    @property
    def metrics(self) -> dict:
        if not self.values:
            return {}
        return {"trial_id": self.trial_id, "epoch": len(self.values), self.metric: self.values[-1],
                "done": True, "node_id": "n1"}

    @property
    def metrics_dataframe(self) -> pd.DataFrame | None:
        if not self.values:
            return None
        n = len(self.values)
        return pd.DataFrame({"epoch": range(1, n + 1), self.metric: self.values,
                             "time_total_s": [1.5 * (i + 1) for i in range(n)]})


# (epochs reported, error?, in ASHA's stopped set?, budget hit?, interrupted?) -> status
CASES = [
    (3, False, False, False, False, "completed"),
    (3, False, False, True, True, "completed"),  # all epochs done: neither cut nor interrupted
    (2, True, False, False, False, "errored"),
    (3, True, False, True, True, "errored"),
    (1, False, True, False, False, "stopped_early"),
    (1, False, True, True, True, "stopped_early"),  # ASHA said so before the end came
    (2, False, False, False, False, "stopped_early"),  # ended early, nothing else explains it
    (1, False, False, False, False, "stopped_early"),  # even after its first epoch
    (1, False, False, False, True, "incomplete"),
    (0, False, False, False, True, "incomplete"),
    (2, False, False, True, False, "cut_by_budget"),
    (0, False, False, True, False, "cut_by_budget"),
    (0, False, False, False, False, "cut_by_budget"),  # never reported: not stopped by ASHA
]


@pytest.mark.parametrize("epochs, error, stopped, budget_hit, interrupted, status", CASES)
def test_each_way_a_trial_ends_has_its_status(epochs, error, stopped, budget_hit, interrupted, status):
    values = [0.5 + 0.1 * i for i in range(epochs)]
    result = Result("t1", values, error=RuntimeError("boom") if error else None)
    df = trial_table([result], spec(), {"t1"} if stopped else set(), budget_hit, interrupted)
    assert df.loc[0, "status"] == status
    assert df.loc[0, "epochs"] == epochs


def test_a_sweep_that_was_not_interrupted_is_the_default():
    df = trial_table([Result("t1", [0.5])], spec(), set(), budget_hit=False)
    assert df.loc[0, "status"] == "stopped_early"


def test_best_value_and_epoch_follow_the_mode_and_rank_the_trials():
    grid = [Result("a", [0.6, 0.9, 0.7]), Result("b", [0.95, 0.5, 0.4]), Result("c", [])]
    df = trial_table(grid, spec("max"), set(), budget_hit=False)
    assert df["trial_id"].tolist() == ["b", "a", "c"]  # best first, the unreported last
    assert df.index.tolist() == [0, 1, 2] and "index" not in df  # renumbered, no stray column
    assert df.loc[0, "best_val_acc"] == pytest.approx(0.95) and df.loc[0, "best_epoch"] == 1
    assert df.loc[1, "best_val_acc"] == pytest.approx(0.9) and df.loc[1, "best_epoch"] == 2
    assert pd.isna(df.loc[2, "best_val_acc"])
    assert df.loc[1, "val_acc"] == pytest.approx(0.7)  # the last value, beside the best
    assert df.loc[1, "wall_s"] == pytest.approx(4.5) and df.loc[1, "node_id"] == "n1"
    assert df.loc[1, "path"] == "/runs/s/trial_a" and df.loc[2, "trial_id"] == "c"
    assert df.loc[0, "config/lr"] == 0.1 and "done" not in df  # bools are not metrics

    low = [Result(t, v, metric="val_loss") for t, v in (("a", [0.6, 0.3, 0.4]), ("b", [0.5, 0.45, 0.2]))]
    df = trial_table(low, spec("min"), set(), budget_hit=False)
    assert df["trial_id"].tolist() == ["b", "a"]
    assert df.loc[0, "best_val_loss"] == pytest.approx(0.2) and df.loc[0, "best_epoch"] == 3
    assert df.loc[1, "best_val_loss"] == pytest.approx(0.3) and df.loc[1, "best_epoch"] == 2


def test_error_column_is_text_holding_the_last_line_of_the_traceback():
    trace = "Traceback (most recent call last):\n  File x\nTrialError: non-finite loss at epoch 2\n\n"
    df = trial_table([Result("a", [0.5], error=RuntimeError(trace)), Result("b", [0.6, 0.7, 0.8])],
                     spec(), set(), budget_hit=False)
    errors = df.set_index("trial_id")["error"]
    assert errors["a"] == "TrialError: non-finite loss at epoch 2" and pd.isna(errors["b"])
    assert df["error"].dtype == "string"
    assert trial_table([Result("b", [0.6])], spec(), set(), False)["error"].dtype == "string"
    assert error_line("x" * 400) == "x" * 300 and error_line("\n \n") == "failed"


GOALS, COLUMNS = [Objective("val_acc", "max"), Objective("params", "min")], ["best_val_acc", "params"]


def test_pareto_front_keeps_exactly_the_non_dominated_trials():
    df = pd.DataFrame({"trial_id": list("abcde"), "best_val_acc": [0.9, 0.8, 0.85, 0.7, None],
                       "params": [500, 100, 600, 50, 10]})
    front = pareto_front(df, GOALS, COLUMNS)
    assert sorted(front["trial_id"]) == ["a", "b", "d"]  # c: a beats it on both; e: no value
    tie = pd.DataFrame({"trial_id": ["a", "b"], "best_val_acc": [0.9, 0.9], "params": [5, 5]})
    assert sorted(pareto_front(tie, GOALS, COLUMNS)["trial_id"]) == ["a", "b"]
    # equal on one objective, worse on the other: dominated
    half = pd.DataFrame({"trial_id": ["a", "b"], "best_val_acc": [0.9, 0.9], "params": [5, 6]})
    assert pareto_front(half, GOALS, COLUMNS)["trial_id"].tolist() == ["a"]
    # a gap in a column that is not an objective (an error text, a config value) keeps the trial
    gaps = df.assign(error=[None, "boom", None, None, None])
    assert sorted(pareto_front(gaps, GOALS, COLUMNS)["trial_id"]) == ["a", "b", "d"]
    assert pareto_front(df.drop(columns="params"), GOALS, COLUMNS).empty


def test_the_course_trial_is_the_spaces_first_point_when_a_config_was_enqueued_before_it():
    s = spec()
    s.initial = [{"lr": 0.2}, {"lr": 0.1}]  # --enqueue's point first, then the space's own
    df = pd.DataFrame({"trial_id": ["a", "b"], "config/lr": [0.2, 0.1], "status": ["completed"] * 2,
                       "epochs": [3, 3], "best_val_acc": [0.9, 0.8], "best_epoch": [3, 2]})
    assert initial_trial(df, s, enqueued=1)["trial_id"] == "b"
    assert initial_trial(df, s)["trial_id"] == "a"  # without --enqueue, the first point is the space's
