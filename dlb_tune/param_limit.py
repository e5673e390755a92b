"""A space's ``max_params``: configurations whose model has more parameters are never trained.

The space file (or ``--set max_params=N``) gives the number, which ``dlb_tune.space`` checks
along with whether the task can count; the searcher (``dlb_tune.search``) asks
``ParamLimit.count`` of every configuration it proposes, before a trial starts, and the task
counts through ``Task.count_params`` (no data, no training). Torch is imported only by a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlb_tune.distributions import SpaceError
from dlb_tune.tasks import get_task

if TYPE_CHECKING:
    from dlb_tune.space import SweepSpec


@dataclass(frozen=True)
class ParamLimit:
    """What a searcher asks of each config it proposes. Plain data (a task's name, not its
    class), so the searcher pickles with it."""

    task: str
    most: int  # parameters a trained model may have
    fixed: dict[str, Any]  # config fields the proposals leave out: the space's constants

    def count(self, config: dict[str, Any]) -> int:
        """Parameters of the model of ``config`` (the searched fields), counted without training."""
        task = get_task(self.task)
        return task.count_params(task.Config(**{**self.fixed, **config}))


def param_limit(spec: SweepSpec, fixed: dict[str, Any] | None = None) -> ParamLimit | None:
    """``spec``'s ``max_params`` as the searcher checks it (None without one); ``fixed``: values the
    searcher's configs lack besides the constants (under ``compare_by``, the compared one)."""
    if spec.max_params is None:
        return None
    return ParamLimit(spec.task, spec.max_params, {**spec.constants(), **(fixed or {})})


def check_one_config(spec: SweepSpec) -> None:
    """A space that searches nothing is one config: over ``max_params``, there is nothing to run."""
    limit = param_limit(spec)
    if limit is None or spec.searched():
        return
    n = limit.count({})
    if n > limit.most:
        raise SpaceError(f"max_params {limit.most}: the space's one configuration has {n} parameters; "
                         f"raise max_params or make the net smaller")
