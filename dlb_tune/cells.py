"""Equal terms for the values of one categorical parameter (``compare_by:`` in a space file).

A question such as "RNN, GRU or LSTM?" is answered badly by one sampler over all parameters: TPE
gives more trials to whichever value looked good early, and the winner says more about the
sampler's luck than about the value. ``CellSearch`` gives every value of the ``compare_by``
parameter the same share of the trials (the next trial goes to a value with the fewest so far,
so the counts differ by at most one at any time, and under ASHA each value meets the rungs
equally often) and searches the other parameters within each value with a sampler and an Optuna
study of its own (``<study>/<param>=<value>`` in the same journal file): one value's results
never steer another's search.

This module imports Ray and Optuna: import it inside the functions that use it.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable

from ray.tune.search import Searcher

CELL_SEPARATOR = "/"  # study name: <experiment>/<param>=<value>


def cell_study_name(study: str, param: str, value: Any) -> str:
    return f"{study}{CELL_SEPARATOR}{param}={value}"


class CellSearch(Searcher):
    """One searcher per value of ``param``; trials dealt out so that every value has an equal share.

    ``make_searcher(value, points)`` builds a value's searcher (its own sampler and study) given
    the initial points that belong to it (``param`` removed); its space is the sweep's without
    ``param``.
    """

    def __init__(self, param: str, values: list[Any], make_searcher: Callable[[Any, list[dict]], Searcher],
                 points_to_evaluate: list[dict] | None = None, metric=None, mode=None):
        super().__init__(metric=metric, mode=mode)
        self.param, self.values = param, list(values)
        points = points_to_evaluate or []
        self.initial = [self.values.index(p[param]) for p in points]  # each initial point's value, in order
        self.searchers = [make_searcher(v, [{k: x for k, x in p.items() if k != param} for p in points if p[param] == v])
                          for v in self.values]
        self.counts = [0] * len(self.values)
        self.owner: dict[str, int] = {}  # trial id -> index of the value it was given

    def set_search_properties(self, metric, mode, config: dict, **spec) -> bool:
        rest = {k: v for k, v in config.items() if k != self.param}
        ok = all(s.set_search_properties(metric, mode, rest, **spec) for s in self.searchers)
        if ok:
            self._metric, self._mode = metric or self._metric, mode or self._mode
        return ok

    def next_value(self) -> int:
        """A value with the fewest trials: the next initial point's, in the space's order, if it is one."""
        fewest = min(self.counts)
        least = [i for i, n in enumerate(self.counts) if n == fewest]
        return next((i for i in self.initial if i in least), least[0])

    def suggest(self, trial_id: str) -> dict | None:
        i = self.next_value()
        config = self.searchers[i].suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        self.counts[i] += 1
        if i in self.initial:
            self.initial.remove(i)
        self.owner[trial_id] = i
        return {**config, self.param: self.values[i]}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def shares(self) -> dict[str, int]:
        """Trials given to each value so far."""
        return {str(v): n for v, n in zip(self.values, self.counts)}

    def trial_states(self) -> list[dict[str, Any]]:
        """Every value's searcher's ``trial_states``, each row naming its value under ``param``."""
        rows = []
        for v, s in zip(self.values, self.searchers):
            rows += [{**r, self.param: v} for r in (s.trial_states() if hasattr(s, "trial_states") else [])]
        return rows

    def rejected(self) -> int:
        """Configurations refused by ``max_params``, every value's searcher together."""
        return sum(s.rejected() for s in self.searchers if hasattr(s, "rejected"))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        for s in self.searchers:  # what each searcher does after a restore (TruthfulOptunaSearch: forgotten trials)
            if hasattr(s, "_fail_forgotten"):
                s._fail_forgotten()
