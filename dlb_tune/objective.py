"""Two questions asked all over the package, answered in one place each.

``Objective``: which of two values of a metric is better (``mode`` max or min), the best of many,
an order best first, whether a value reaches a target. ``TrialStatus``: how a trial ended (or
where it stands), in one vocabulary, decided by one function (``TrialStatus.classify``) whether
the facts come from Tune's results after the sweep, from Ray's experiment state while it runs,
or from a Tune callback as trials end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable

MODES = ("max", "min")


@dataclass(frozen=True)
class Objective:
    """A metric and the direction in which it improves."""

    metric: str
    mode: str  # max | min

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    @property
    def maximize(self) -> bool:
        return self.mode == "max"

    @property
    def sign(self) -> int:
        """+1 or -1: multiplied by it, larger is better whatever the mode."""
        return 1 if self.maximize else -1

    @property
    def direction(self) -> str:
        """Optuna's word for the mode."""
        return "maximize" if self.maximize else "minimize"

    @property
    def at_least(self) -> str:
        """How "reaches" reads for this mode: ``>=`` or ``<=``."""
        return ">=" if self.maximize else "<="

    def better(self, value: float, than: float | None) -> bool:
        """Whether ``value`` improves on ``than`` (anything improves on None)."""
        return than is None or (value > than if self.maximize else value < than)

    def reached(self, value: float, target: float) -> bool:
        return value >= target if self.maximize else value <= target

    def best(self, values: Iterable[float]) -> float | None:
        """The best of the finite values; None when there is none."""
        finite = [float(v) for v in values if v is not None and not _nan(v)]
        return (max if self.maximize else min)(finite) if finite else None

    def best_index(self, series: Any) -> Any:
        """The index label of a pandas Series' best value (NaN skipped)."""
        return series.idxmax() if self.maximize else series.idxmin()

    def running_best(self, series: Any) -> Any:
        """A pandas Series' best value so far, at each position."""
        return series.cummax() if self.maximize else series.cummin()

    def sort(self, frame: Any, column: str) -> Any:
        """A DataFrame ordered by ``column``, best first, missing values last."""
        return frame.sort_values(column, ascending=not self.maximize, na_position="last")


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def pareto_front(frame: Any, objectives: list[Objective], columns: list[str]) -> Any:
    """The rows of ``frame`` that no other row beats on every objective (``columns[i]`` holds
    ``objectives[i]``'s value); rows missing a value are left out."""
    ok = frame.dropna(subset=[c for c in columns if c in frame]).copy()
    if ok.empty or not all(c in ok for c in columns):
        return ok.iloc[0:0]
    values = ok[columns].to_numpy() * [o.sign for o in objectives]  # larger is better on every column now
    keep = [not ((values >= row).all(axis=1) & (values > row).any(axis=1)).any() for row in values]
    return ok[keep]


class TrialStatus(StrEnum):
    """How a trial ended, or where it stands while the sweep runs; the value is the word written
    to results.parquet and shown by every command."""

    RUNNING = "running"
    PENDING = "pending"  # not started: waiting for resources, or not yet proposed
    COMPLETED = "completed"  # every epoch
    STOPPED_EARLY = "stopped_early"  # by ASHA
    CUT_BY_BUDGET = "cut_by_budget"  # the sweep's time budget ran out
    INCOMPLETE = "incomplete"  # interrupted: `dlb-tune resume` continues it
    ERRORED = "errored"

    @property
    def words(self) -> str:
        """For people: "stopped early"."""
        return self.value.replace("_", " ")

    @property
    def ended(self) -> bool:
        return self not in (TrialStatus.RUNNING, TrialStatus.PENDING)

    @classmethod
    def classify(cls, *, epochs: int, max_epochs: int, errored: bool = False, ended: bool = True,
                 queued: bool = False, stopped: bool = False, budget_hit: bool = False,
                 interrupted: bool = False) -> TrialStatus:
        """The one rule. ``ended``: the trial has stopped for good (Tune is done with it);
        ``queued``: not started yet; ``stopped``: ASHA stopped it; ``budget_hit``: the sweep's
        time budget ran out; ``interrupted``: the sweep was (Ctrl-C, SIGTERM, lost nodes)."""
        if errored:
            return cls.ERRORED
        if not ended:
            return cls.PENDING if queued else cls.RUNNING
        if epochs >= max_epochs:
            return cls.COMPLETED
        if stopped or (not budget_hit and not interrupted and epochs > 0):
            return cls.STOPPED_EARLY
        return cls.INCOMPLETE if interrupted else cls.CUT_BY_BUDGET


ENDED = tuple(s for s in TrialStatus if s.ended)  # the order every summary counts them in
