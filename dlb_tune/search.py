"""The Optuna searcher: TPE built from the space file's ``search:`` section, told the truth.

Ray's ``OptunaSearch`` tells Optuna every trial that ends without an error as COMPLETE with its
last value, so a trial ASHA stopped after 2 epochs counts as a finished 2-epoch result beside
16-epoch ones. ``TruthfulOptunaSearch`` tells such a trial PRUNED instead (Optuna then ranks it
by its per-epoch intermediate values, as its own pruning integration would) and an errored trial
FAIL. A space's ``max_params`` is kept here too: a proposal whose model is too big never
becomes a trial; it is told PRUNED at once, before any result, with its excess as an Optuna
constraint (TPE ranks an infeasible trial below every feasible one, and infeasible ones by how
far over they are, so it learns where the limit lies even before any trial has reported) and
its parameter count as ``REJECTED_ATTR``; then the searcher proposes again. This module imports
Ray and Optuna: import it inside the functions that use it.

The study lives in a journal file in the experiment folder (``optuna.journal``, Optuna's
``JournalStorage`` over a ``JournalFileBackend``), so ``optuna-dashboard <exp>/optuna.journal``
and Optuna's plotting open a sweep, running or finished. Tune pickles the searcher, storage
included, when it saves the experiment, and a resumed sweep appends to the same file. A storage
URI (s3://) has no journal: Optuna's file backend needs a local file system, and the sweep says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from dlb_tune.distributions import SpaceError
from dlb_tune.param_limit import ParamLimit
from dlb_tune.space import search_as_run
from dlb_tune.storage import is_uri

REJECTED_ATTR = "rejected_params"  # user attr of an Optuna trial over max_params: its parameter count
# proposals over max_params in a row before the sweep stops: the space hardly holds a net that fits
MAX_REJECTED_IN_A_ROW = 200


def journal_storage(path: str, echo: Callable[[str], None]) -> optuna.storages.JournalStorage | None:
    """The study's journal file (the experiment folder's ``optuna.journal``); None (said in one
    line) when it would be on object storage."""
    if is_uri(path):
        echo(f"no Optuna journal: {path} is not on a local disk, and Optuna's journal file needs one")
        return None
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(settings: dict[str, Any], seed: int, concurrency: int) -> optuna.samplers.BaseSampler:
    """The sampler of a validated ``search:`` section (``space.search_as_run`` fills in what the
    section leaves to dlb-tune): TPE or random sampling."""
    settings = search_as_run(settings, concurrency)
    if settings["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=settings.get("multivariate"),
        group=settings.get("group", False),
        constant_liar=settings["constant_liar"],
        n_startup_trials=settings.get("n_startup_trials", 10),
    )


class TruthfulOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells a trial ended before ``max_epochs`` as PRUNED, an error as FAIL.

    "Ended before max_epochs without an error" covers whatever stopped it (ASHA, the time
    budget): either way its last value is an intermediate one. Judging by the epoch rather than
    asking the scheduler keeps the searcher self-contained, so Tune's pickled save/restore of it
    (resume) needs nothing else.
    """

    def __init__(self, *, max_epochs: int, limit: ParamLimit | None = None, **kwargs):
        super().__init__(**kwargs)
        self._max_epochs = max_epochs
        self._limit = limit

    def suggest(self, trial_id: str) -> dict | None:
        """Optuna's next config within ``max_params``; those over it are told PRUNED and counted."""
        smallest = None
        for _ in range(MAX_REJECTED_IN_A_ROW):
            config = super().suggest(trial_id)
            if self._limit is None or not isinstance(config, dict):
                return config
            n = self._limit.count(config)
            if n <= self._limit.most:
                return config
            smallest = n if smallest is None else min(smallest, n)
            rejected = self._ot_trials.pop(trial_id)  # the next super().suggest asks Optuna anew
            rejected.set_user_attr(REJECTED_ATTR, n)
            rejected.set_constraint("max_params", n - self._limit.most)  # > 0: infeasible
            self._ot_study.tell(rejected, state=TrialState.PRUNED)
        raise SpaceError(f"max_params {self._limit.most}: {MAX_REJECTED_IN_A_ROW} configurations in a row had more "
                         f"parameters (the smallest {smallest}); raise max_params or narrow the space to smaller nets")

    def rejected(self) -> int:
        """Configurations proposed so far and refused by ``max_params``."""
        trials = self._ot_study.get_trials(deepcopy=False) if self._ot_study else []
        return sum(REJECTED_ATTR in t.user_attrs for t in trials)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._fail_forgotten()

    def _fail_forgotten(self) -> None:
        """Trials Optuna handed out after Tune last saved this searcher are unknown to the resumed
        sweep: told FAIL, so the journal does not show them RUNNING for ever."""
        if self._ot_study is None:
            return
        known = {t.number for t in self._ot_trials.values()}
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number not in known:
                self._ot_study.tell(t.number, state=TrialState.FAIL)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Multi-objective studies take no intermediate values (Optuna has no report for them).
        if self._multi_objective() or trial_id in self._completed_trials:
            return
        value = result.get(self.metric)
        if value is not None:
            # Step = epoch, the same axis ASHA's rungs use; a resumed trial's repeated epoch is
            # ignored by Optuna with a warning.
            self._ot_trials[trial_id].report(value, step=int(result.get("epoch", result["training_iteration"])))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        state = self.state_for(result, error)
        values = self._values(result) if state == TrialState.COMPLETE else None
        try:
            self._ot_study.tell(self._ot_trials[trial_id], values, state=state)
        except (ValueError, RuntimeError) as exc:  # e.g. a NaN value: Optuna refuses it
            optuna.logging.get_logger("optuna").warning(str(exc))
        self._completed_trials.add(trial_id)

    def state_for(self, result: dict | None, error: bool) -> TrialState:
        if error:
            return TrialState.FAIL
        values = self._values(result)
        if values is None or any(v is None for v in values):
            return TrialState.PRUNED  # stopped before its first result
        # A multi-objective study cannot take PRUNED trials into account (no intermediate
        # values), so a stopped trial stays COMPLETE with the values it had reached.
        if self._multi_objective():
            return TrialState.COMPLETE
        stopped_early = int((result or {}).get("epoch", self._max_epochs)) < self._max_epochs
        return TrialState.PRUNED if stopped_early else TrialState.COMPLETE

    def _values(self, result: dict | None) -> list | None:
        if not result:
            return None
        metrics = self.metric if self._multi_objective() else [self.metric]
        return [result.get(m) for m in metrics]

    def _multi_objective(self) -> bool:
        return isinstance(self.metric, list)

    def trial_states(self) -> list[dict[str, Any]]:
        """Per Tune trial, in the order Optuna proposed them: its Optuna number and the state it
        was told (RUNNING while not told yet)."""
        trials = self._ot_study.get_trials(deepcopy=False) if self._ot_study else []
        by_number = {t.number: t.state.name for t in trials}
        rows = [{"trial_id": tid, "number": t.number, "state": by_number.get(t.number, "RUNNING")}
                for tid, t in self._ot_trials.items()]
        return sorted(rows, key=lambda r: r["number"])
