"""``python -m bench replay TASK``: search strategies compared on a recorded table, many seeds each.

Every run is the real Tune stack (Ray's and Optuna's classes unmodified, dlb-tune's own searcher
and scheduler built by ``dlb_tune.make_searcher`` / ``make_scheduler`` where the strategy
is dlb-tune's) over ``bench.tables.replay_trainable``: a trial sleeps each recorded epoch's
seconds times ``--scale`` and reports the recorded value. The search space is the task's default
space file with the table's grid (continuous ranges stay continuous, the trainable snaps to the
grid; categorical ones take the grid's values; parameters the table held fixed are constants),
the budget is the space's trials, time budget and the table's epochs, and two trials run at a
time, as a default sweep does on this 2-CPU machine. Simulated seconds = wall seconds since
``fit`` / scale, so Tune's own overhead counts, magnified by 1/scale: ``--overhead`` measures it
on a constant-epoch copy of the table.

    python -m bench replay fcn --seeds 20 --minutes 7     # runs, appended to <task>.runs.jsonl
    python -m bench replay fcn --overhead --seeds 0       # Tune's overhead at its scale only
    python -m bench replay fcn --summary                  # <task>.json, .png, .md from the runs

Runs go seed by seed, every strategy within a seed, so a change in the shared machine's load
hits all strategies alike and the paired test compares neighbours in time. A run already in
the runs file (same table, scale and budget) is skipped: ``--minutes`` ends a command early and
the next one resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bench import replay_report
from bench.cli import benchmark
from bench.common import loadavg, say, scratch_dir
from bench.replay_report import CONCURRENCY, RESULTS
from bench.tables import TABLES, ReplayDiverged, Table, read_table, replay_divergence, replay_trainable

# A replayed epoch sleeps this long on average (the default scale): Tune handles a result in
# tens of milliseconds on the shared 2-CPU machine, and --overhead measures what that costs.
EPOCH_WALL_S = 0.13
TARGET_QUANTILE = 0.95  # of the grid points' final values: the target a run has to reach
OVERHEAD_RUNS = 3  # constant-epoch runs per loop: the shared machine's load varies from run to run


@dataclass(frozen=True)
class Strategy:
    name: str
    search: str  # random | optuna (dlb-tune's TruthfulOptunaSearch) | optuna-ray | bohb | in-process
    scheduler: str  # fifo | asha | hyperband | bohb | sha (Optuna's SuccessiveHalvingPruner)
    liar: bool | None = None  # TPE's constant liar; None: as dlb-tune decides (on when trials overlap)
    about: str = ""
    # in place of the space file's (None: the space file's); what its scheduler or pruner halves by
    grace_period: int | None = None
    reduction_factor: int | None = None
    tpe: tuple[tuple[str, Any], ...] = ()  # (key, value) of the space's `search:` section, e.g. n_startup_trials

    def applied(self, spec):
        """The replay spec as this strategy runs it: its rungs and TPE settings in place of the space's."""
        search = {**spec.search, **dict(self.tpe)}
        if self.liar is not None:
            search["constant_liar"] = self.liar
        rungs = {k: v for k, v in (("grace_period", self.grace_period), ("reduction_factor", self.reduction_factor))
                 if v is not None}
        return dataclasses.replace(spec, search=search, **rungs)


def variant(base: Strategy, grace_period: int | None = None, reduction_factor: int | None = None,
            **tpe: Any) -> Strategy:
    """``base`` with other rungs or TPE settings, named for them: random-asha-g1-rf4, ...-ns5-mv."""
    short = {"n_startup_trials": "ns", "multivariate": "mv", "group": "group"}
    tags = [f"g{grace_period}" * (grace_period is not None), f"rf{reduction_factor}" * (reduction_factor is not None)]
    tags += [short.get(k, k) + ("" if v is True else str(v)) for k, v in tpe.items()]
    settings = ", ".join(f"{k} {v}" for k, v in [("grace period", grace_period), ("reduction factor", reduction_factor),
                                                  *tpe.items()] if v is not None)
    return dataclasses.replace(base, name="-".join([base.name, *filter(None, tags)]), about=f"{base.name} with {settings}",
                               grace_period=grace_period, reduction_factor=reduction_factor, tpe=tuple(tpe.items()))


STRATEGIES = (
    Strategy("random-fifo", "random", "fifo", about="random search, every trial to max_epochs"),
    Strategy("random-asha", "random", "asha", about="random search, dlb-tune's ASHA"),
    Strategy("optuna-fifo", "optuna", "fifo", about="dlb-tune's TPE, every trial to max_epochs"),
    Strategy("optuna-asha-ray", "optuna-ray", "asha",
             about="Ray's OptunaSearch: ASHA-stopped trials told COMPLETE with their last value"),
    Strategy("optuna-asha-pruned", "optuna", "asha", liar=False,
             about="TruthfulOptunaSearch (stopped trials PRUNED), no constant liar"),
    Strategy("optuna-asha-pruned-liar", "optuna", "asha", liar=True,
             about="TruthfulOptunaSearch with TPE's constant liar: dlb-tune's default at 2 trials at a time"),
    Strategy("optuna-in-process-sha", "in-process", "sha",
             about="Optuna's own study and SuccessiveHalvingPruner in threads, no Tune"),
    Strategy("random-hyperband", "random", "hyperband", about="random search, Ray's HyperBandScheduler"),
    Strategy("bohb", "bohb", "bohb", about="Ray's TuneBOHB + HyperBandForBOHB (hpbandster, ConfigSpace)"),
)
_BASE = {s.name: s for s in STRATEGIES}
# The space files' ASHA rungs and TPE settings varied (#16 part 5): a good trial still trains to
# max_epochs, so what a shorter grace period or a steeper halving can save is the bad trials' epochs.
STRATEGIES += (
    variant(_BASE["random-asha"], grace_period=1, reduction_factor=3),
    variant(_BASE["random-asha"], grace_period=1, reduction_factor=4),
    variant(_BASE["random-asha"], grace_period=4, reduction_factor=4),
    # on the fcn_shifts table 14 of its 15 target-reaching points rank in the top quarter at epoch 8,
    # 11 at epoch 4 (bench/results/search_defaults.md)
    variant(_BASE["random-asha"], grace_period=8, reduction_factor=4),
    variant(_BASE["optuna-asha-pruned-liar"], grace_period=1, reduction_factor=4),
    variant(_BASE["optuna-asha-pruned-liar"], grace_period=1, reduction_factor=4, n_startup_trials=5),
    # emotion's target is mostly reached within ~10 trials, TPE's default random start-up
    variant(_BASE["optuna-asha-pruned-liar"], n_startup_trials=5),
    variant(_BASE["optuna-asha-pruned-liar"], n_startup_trials=5, multivariate=True),
    variant(_BASE["optuna-asha-pruned-liar"], n_startup_trials=3),
    variant(_BASE["optuna-asha-pruned-liar"], grace_period=1, reduction_factor=4, n_startup_trials=3),
)
BY_NAME = {s.name: s for s in STRATEGIES}
DEFAULT = "optuna-asha-pruned-liar"  # what `dlb-tune sweep` builds when two trials overlap
# ... unless the space file asks for random sampling (search: {sampler: random}): then Optuna's
# RandomSampler under ASHA, which samples as Tune's random search does
DEFAULT_RANDOM = "random-asha"
# What a strategy without settings of its own runs with: the space files' rungs and TPE settings
# when the campaign began, so that a name keeps meaning the runs recorded under it after a space
# file's defaults change; the space file's own settings pick which strategy is the default.
BASELINE = {"grace_period": 2, "reduction_factor": 3, "search": {}}


@dataclass
class Setup:
    """What every run of one task shares."""

    table: Table
    spec: Any  # dlb_tune.SweepSpec of the replay: the grid's parameters searched
    scale: float
    table_id: str  # the table file's hash: runs of another recording are not mixed in
    default: str = DEFAULT  # the strategy the task's space file gives `dlb-tune sweep`
    table_name: str | None = None  # the table file's stem (None: the task's name)

    @property
    def name(self) -> str:
        """What its files in bench/results/replay/ are named after: the table (fcn, fcn_shifts)."""
        return self.table_name or self.table.meta["task"]

    @property
    def budget_s(self) -> float:
        return float(self.spec.time_budget_s)

    def key(self) -> dict[str, Any]:
        """What a run must share with this setup to be resumed rather than re-run."""
        return {"table": self.table_id, "scale": self.scale, "budget_s": self.budget_s,
                "num_samples": self.spec.num_samples, "max_epochs": self.spec.max_epochs}


# --- the replay's search space ----------------------------------------------------------------


def replay_spec(table: Table, space_path: Path | None = None):
    """The task's default space file narrowed to the table: see the module docstring."""
    import yaml

    from dlb_tune import default_space_file, parse_space

    path = space_path or default_space_file(table.meta["task"])
    raw = yaml.safe_load(path.read_text())
    raw["params"] = replay_params(raw.get("params") or {}, table, raw.get("initial") or [])
    raw["initial"] = [snapped(point, table) for point in raw.get("initial") or []]
    raw["max_epochs"] = table.max_epochs
    raw["grace_period"] = min(int(raw.get("grace_period", 1)), table.max_epochs)
    raw["num_samples"] = table.meta.get("num_samples", raw.get("num_samples"))
    raw["time_budget_s"] = table.meta.get("time_budget_s") or budget_on(table, raw)
    # the strategies name their searcher: Optuna's are TPE whatever sampler the space file chose
    raw["search"] = {k: v for k, v in (raw.get("search") or {}).items() if k != "sampler"}
    return parse_space(raw, source=f"{path} replayed on the {table.meta['task']} table")


def budget_on(table: Table, raw: dict[str, Any]) -> float:
    """The space's time budget was set for full-size epochs; a table recorded on less data (its
    ``limit``) gets 1.5 times what the space's trials of average length take two at a time (what
    random + FIFO needs, with room), if that is less."""
    import numpy as np

    mean_point_s = float(np.mean([sum(table.curve(p)[1]) for p in range(len(table.points))]))
    needed = 1.5 * math.ceil(int(raw.get("num_samples", 8)) / CONCURRENCY) * mean_point_s
    return round(min(float(raw.get("time_budget_s") or needed), needed), 1)


def replay_params(params: dict[str, Any], table: Table, initial: list[dict[str, Any]]) -> dict[str, Any]:
    grid, fixed = table.meta["grid"], table.meta.get("fixed", {})
    out = {}
    for name, dist in params.items():
        if name in grid:  # a continuous range stays continuous: the searcher sees the real space
            out[name] = dist if isinstance(dist, dict) and "choice" not in dist else {"choice": grid[name]}
        elif name in fixed:
            out[name] = fixed[name]
        elif isinstance(dist, dict) and initial:  # not recorded as fixed: the course config's value
            out[name] = initial[0][name]
        else:
            out[name] = dist
    for name, values in grid.items():
        out.setdefault(name, {"choice": values})
    return out


def snapped(point: dict[str, Any], table: Table) -> dict[str, Any]:
    """An ``initial:`` config moved to its grid point, so it is one the table can replay."""
    return dict(table.points[table.snap({**table.points[0], **point})])


def make_setup(task: str, table_path: Path | None, scale: float | None, budget_s: float | None = None) -> Setup:
    """``budget_s``: simulated seconds in place of ``budget_on``'s rule; its files are named for it."""
    path = table_path or TABLES / f"{task}.parquet"
    if not Path(path).exists():
        raise SystemExit(f"error: no table {path}; record one with `python -m bench record {task}`")
    table = read_table(path)
    if table.meta["task"] != task:
        raise SystemExit(f"error: {path} is a table of task '{table.meta['task']}', not '{task}'")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    if scale is None:  # 2 significant digits, so the runs file's key reads as it was meant
        scale = float(f"{EPOCH_WALL_S / float(table.frame['epoch_s'].mean()):.2g}")
    from dlb_tune import default_space_file

    spec = dataclasses.replace(replay_spec(table), **BASELINE)
    name = Path(path).stem
    if budget_s is not None:
        spec, name = dataclasses.replace(spec, time_budget_s=budget_s), f"{name}.budget-{budget_s:g}"
    return Setup(table, spec, scale, digest, default_strategy(default_space_file(task)), name)


def default_strategy(space_path: Path) -> str:
    """The strategy `dlb-tune sweep` runs with this space file (two trials at a time): dlb-tune's
    ASHA with the file's sampler, and the file's rungs and TPE settings."""
    from dlb_tune import load_space

    space = load_space(space_path)
    base = BY_NAME[DEFAULT_RANDOM if space.search.get("sampler") == "random" else DEFAULT]
    want = sampler_settings(space, random=base.search == "random")
    for s in STRATEGIES:
        if (s.search, s.scheduler, s.liar) == (base.search, base.scheduler, base.liar):
            have = sampler_settings(s.applied(dataclasses.replace(space, **BASELINE)), random=base.search == "random")
            if have == want:
                return s.name
    raise SystemExit(f"error: no strategy in bench/replay.py runs {space_path}'s settings {want}; add a variant")


def sampler_settings(spec, random: bool) -> dict[str, Any]:
    """What tells the default's variants apart: rungs, and TPE's settings unless it samples at random
    (the constant liar is on for the default either way, two trials at a time)."""
    tpe = {} if random else {k: v for k, v in spec.search.items() if k not in ("sampler", "constant_liar")}
    return {"grace_period": spec.grace_period, "reduction_factor": spec.reduction_factor, **tpe}


def target_of(table: Table, quantile: float = TARGET_QUANTILE) -> float:
    """The ``quantile`` of the grid points' final values (the best ``1 - quantile`` of the grid
    reach it by their last epoch); for a ``min`` metric, the mirror image."""
    import numpy as np

    finals = [table.curve(p)[0][-1] for p in range(len(table.points)) if table.diverged_at(p) is None]
    q = quantile if table.mode == "max" else 1 - quantile
    return float(np.nanquantile(finals, q))  # a diverged point has no final value


# --- one run ----------------------------------------------------------------------------------


def result_clock(metric: str):
    """A Tune callback that stamps every result with the driver's wall seconds since the first
    trial started. Tune's set-up before it (seconds, the same for every strategy, and paid once
    per sweep, not per epoch) would weigh 1/scale times its real share: it is kept apart."""
    from ray.tune import Callback

    class ResultClock(Callback):
        def __init__(self):
            self.rows: list[list[float]] = []
            self.fit_t0 = self.t0 = time.perf_counter()
            self.setup_s: float | None = None

        def start(self) -> None:
            self.fit_t0 = time.perf_counter()

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.setup_s is None:
                self.t0 = time.perf_counter()
                self.setup_s = self.t0 - self.fit_t0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.rows.append([time.perf_counter() - self.t0, float(result[metric]), int(result["epoch"]),
                              int(result["point"])])

    return ResultClock()


def budget_stop(clock, wall_budget_s: float):
    """Ends the run when the budget has passed on the clock's time (Tune's own ``time_budget_s``
    would count the set-up too)."""
    from ray.tune.stopper import Stopper

    class BudgetStop(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return clock.setup_s is not None and time.perf_counter() - clock.t0 > wall_budget_s

    return BudgetStop()


def searcher_and_scheduler(strategy: Strategy, setup: Setup, seed: int, name: str, storage: Path):
    """dlb-tune's own construction for its strategies; Ray's classes as documented for the rest."""
    from dlb_tune import SweepOptions, make_scheduler, make_searcher

    spec = setup.spec
    opts = SweepOptions(task=spec.task, name=name, storage=str(storage), seed=seed,
                        sampler="random" if strategy.search == "random" else None,
                        scheduler=strategy.scheduler if strategy.scheduler in ("asha", "fifo") else "fifo")
    if strategy.search in ("random", "optuna"):
        searcher = make_searcher(spec, opts, live_trials(strategy, spec), echo=say)
    elif strategy.search == "optuna-ray":
        searcher = ray_optuna_search(spec, seed)
    else:
        searcher = bohb_search(spec, seed)
    return searcher, other_scheduler(strategy, spec) or make_scheduler(spec, opts)


def live_trials(strategy: Strategy, spec) -> int:
    """How many trials may exist unfinished at once. HyperBand's brackets fill with the trials that
    exist: capped at two (paused ones count), each bracket held two and halving to its top n/eta
    kept both, so every trial ran to the end. Its two CPUs keep it at two running; BOHB's own
    scheduler unpauses trials when a bracket cannot fill."""
    return spec.num_samples if strategy.scheduler == "hyperband" else CONCURRENCY


def ray_optuna_search(spec, seed: int):
    """Ray's plain OptunaSearch with the same sampler dlb-tune builds: only the telling differs."""
    from ray.tune.search.optuna import OptunaSearch

    from dlb_tune import make_sampler

    return OptunaSearch(metric=spec.metric, mode=spec.mode, points_to_evaluate=spec.initial or None,
                        sampler=make_sampler(spec.search, seed, CONCURRENCY))


def bohb_search(spec, seed: int):
    from ray.tune.search.bohb import TuneBOHB

    return TuneBOHB(metric=spec.metric, mode=spec.mode, seed=seed, points_to_evaluate=spec.initial or None)


def other_scheduler(strategy: Strategy, spec):
    """HyperBand and BOHB's HyperBand (both pause trials); None for dlb-tune's own schedulers."""
    from ray.tune.schedulers import HyperBandForBOHB, HyperBandScheduler

    kinds = {"hyperband": HyperBandScheduler, "bohb": HyperBandForBOHB}
    if strategy.scheduler not in kinds:
        return None
    return kinds[strategy.scheduler](time_attr="epoch", metric=spec.metric, mode=spec.mode, max_t=spec.max_epochs,
                                     reduction_factor=spec.reduction_factor)


def tune_run(strategy: Strategy, setup: Setup, seed: int, storage: Path) -> tuple[list[list[float]], float]:
    """One seeded Tune run: its results as [wall s since the first trial started, value, epoch,
    point], and Tune's set-up seconds before that."""
    from ray import tune

    spec, name = setup.spec, f"{strategy.name}-{seed}"
    searcher, scheduler = searcher_and_scheduler(strategy, setup, seed, name, storage)
    pauses = strategy.scheduler in ("hyperband", "bohb")  # paused trials resume from a checkpoint
    limit = None if strategy.scheduler == "hyperband" else CONCURRENCY  # see live_trials
    trainable = tune.with_parameters(replay_trainable, table=setup.table, scale=setup.scale, checkpoint=pauses)
    clock = result_clock(spec.metric)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=spec.param_space(),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=spec.num_samples,
                                    max_concurrent_trials=limit, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=[clock], verbose=0,
                                  stop=budget_stop(clock, setup.budget_s * setup.scale),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    clock.start()
    tuner.fit()
    return clock.rows, clock.setup_s or 0.0


def in_process_run(setup: Setup, seed: int, plain: bool = False) -> tuple[list[list[float]], float]:
    """Optuna's own loop: ``CONCURRENCY`` threads, each epoch a sleep of its recorded seconds,
    the same sampler, trials, epochs, budget and rungs (grace period, reduction factor) as ASHA;
    ``plain``: random search, no pruning (the loop's own overhead, beside Tune's random + FIFO)."""
    import optuna

    from bench.early_stopping import suggest
    from dlb_tune import make_sampler

    spec, table, scale = setup.spec, setup.table, setup.scale
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if spec.mode == "max" else "minimize",
        sampler=optuna.samplers.RandomSampler(seed) if plain else make_sampler(spec.search, seed, CONCURRENCY),
        pruner=optuna.pruners.NopPruner() if plain else optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.grace_period, reduction_factor=spec.reduction_factor))
    for point in spec.initial:
        study.enqueue_trial(point)
    rows, lock, t0, deadline = [], threading.Lock(), time.perf_counter(), setup.budget_s * scale

    def objective(trial):
        point = table.snap(suggest(trial, spec))
        values, seconds = table.curve(point)
        for epoch, (value, secs) in enumerate(zip(values, seconds), start=1):
            if time.perf_counter() - t0 > deadline:
                break  # as Tune's time budget ends running trials
            time.sleep(secs * scale)
            with lock:
                rows.append([time.perf_counter() - t0, value, epoch, point])
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        replay_divergence(table, point, scale)  # raises for a diverged point: Optuna marks it FAIL
        return value  # the last value, as Tune tells its searcher

    study.optimize(objective, n_trials=spec.num_samples, timeout=deadline, n_jobs=CONCURRENCY,
                   catch=(ReplayDiverged,))
    return rows, 0.0


def run_one(strategy: Strategy, setup: Setup, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    setup = dataclasses.replace(setup, spec=strategy.applied(setup.spec))
    if strategy.search == "in-process":
        rows, setup_s = in_process_run(setup, seed)
    else:
        with scratch_dir("replay") as storage:
            rows, setup_s = tune_run(strategy, setup, seed, storage)
    return {"task": setup.table.meta["task"], "strategy": strategy.name, "seed": seed, "mode": setup.table.mode, **setup.key(),
            "grace_period": setup.spec.grace_period, "reduction_factor": setup.spec.reduction_factor,
            "search": setup.spec.search,
            "wall_s": round(time.perf_counter() - t0, 3), "setup_s": round(setup_s, 3),
            "results": [[round(r[0], 4), round(r[1], 6), r[2], r[3]] for r in rows]}


# --- the campaign -----------------------------------------------------------------------------


def runs_file(name: str) -> Path:
    return RESULTS / f"{name}.runs.jsonl"


def read_runs(name: str) -> list[dict[str, Any]]:
    path = runs_file(name)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def campaign(setups: list[Setup], strategies: list[Strategy], seeds: int, minutes: float | None, drivers,
             first_seed: int = 0) -> int:
    """Every (task, seed, strategy) not in its runs file yet, ``jobs`` at a time, each appended as
    it finishes; returns the runs made."""
    todo = []
    for seed in range(first_seed, seeds):
        for setup in setups:
            key = setup.key()
            done = {(r["strategy"], r["seed"]) for r in read_runs(setup.name) if all(r.get(k) == v for k, v in key.items())}
            todo += [(setup, s, seed) for s in strategies if (s.name, seed) not in done]
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = {setup.table_id: setup.name for setup in setups}
    made = 0
    for rec in in_parallel(todo, drivers, minutes):
        with runs_file(names[rec["table"]]).open("a") as f:
            f.write(json.dumps(rec) + "\n")
        made += 1
        say(f"{rec['task']} seed {rec['seed']} {rec['strategy']}: {len(rec['results'])} results, {rec['wall_s']:.1f}s "
            f"({made}/{len(todo)})")
    if made < len(todo):
        say(f"stopped after {minutes:g} min with {len(todo) - made} runs to go; run again to resume")
    return made


def in_parallel(todo: list[tuple[Setup, Strategy, int]], drivers, minutes: float | None):
    """``run_one`` over ``todo`` in the ``drivers`` (pool, Ray address) processes, each its own
    Tune driver on this command's Ray instance (trials only sleep, so drivers side by side cost
    only the drivers' own CPU, which the overhead measurement sees too). Yields records as they
    finish; starts nothing after ``minutes``."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pool, address = drivers
    deadline = None if minutes is None else time.perf_counter() + minutes * 60
    if pool is None:  # one run at a time, in this process
        for setup, strategy, seed in todo:
            if deadline is not None and time.perf_counter() > deadline:
                return
            yield run_one(strategy, setup, seed)
        return
    queue, running = list(todo), set()
    while queue or running:
        while queue and len(running) < pool._max_workers and (deadline is None or time.perf_counter() < deadline):
            setup, strategy, seed = queue.pop(0)
            running.add(pool.submit(run_in_driver, address, strategy, setup, seed))
        if not running:
            return
        finished, running = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            yield future.result()


@contextmanager
def driver_pool(jobs: int, with_ray: bool):
    """``jobs`` driver processes forked before Ray starts, so they share this process's imports
    (spawned, each imports torch, Ray and Optuna again: minutes on the busy shared machine), then
    this command's one Ray instance; yields (pool, its address or None)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from dlb_tune import loopback_only

    loopback_only()  # before Ray is imported and the drivers forked: all of them use 127.0.0.1
    if jobs == 1:  # no driver processes: the runs go in this one
        yield None, start_ray(1) if with_ray else None
        return
    import optuna  # noqa: F401 - imported before the fork, for the drivers
    import ray.tune  # noqa: F401

    import bench.early_stopping  # noqa: F401
    from dlb_tune import make_sampler, make_searcher  # noqa: F401

    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
    for f in [pool.submit(time.sleep, 0.1) for _ in range(jobs)]:
        f.result()  # every driver forked now, while no Ray connection exists to be copied
    try:
        address = start_ray(jobs) if with_ray else None
        # ray.init turned token authentication on in this process's environment only
        auth = {k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH")}
        yield pool, (address, auth) if address else None
    finally:
        pool.shutdown(cancel_futures=True)


def run_in_driver(ray_at: tuple[str, dict[str, str]] | None, strategy: Strategy, setup: Setup, seed: int) -> dict[str, Any]:
    """One run in a driver process, which joins the command's Ray instance (address, auth
    settings) on its first Tune run."""
    import ray

    if ray_at is not None and not ray.is_initialized():
        address, auth = ray_at
        os.environ.update(auth)
        import logging

        from dlb_tune import quiet_libraries

        quiet_libraries()
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    return run_one(strategy, setup, seed)


def available(strategy: Strategy) -> str | None:
    """None if the strategy's libraries import, else why not."""
    if strategy.search != "bohb":
        return None
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError as e:
        return f"{strategy.name} needs hpbandster and ConfigSpace ({e})"
    return None


def start_ray(jobs: int) -> str:
    """One Ray instance for the whole command, room for ``jobs`` runs of two trials each; its address."""
    import logging

    import ray

    from dlb_tune import loopback_only, quiet_libraries

    loopback_only()
    quiet_libraries()
    # no CSV/JSON/TensorBoard file per result: a replayed epoch lasts milliseconds, and the
    # writes would be Tune overhead magnified by 1/scale (the drivers inherit this)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    for attempt in range(3):  # Ray gives its raylet 30 s to start, which a busy machine can miss
        try:
            ray.init(address="local", num_cpus=CONCURRENCY * jobs, num_gpus=0, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
            break
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            ray.shutdown()
            if attempt == 2:
                raise SystemExit(f"error: Ray did not start three times ({e})") from None
            say(f"Ray did not start ({e}); again")
    return ray.get_runtime_context().gcs_address


@benchmark("replay")
def replay(
    tasks: Annotated[str, typer.Argument(
        help="A task, or several comma-separated (one Ray instance, runs interleaved).")],
    seeds: Annotated[int, typer.Option(help="Seeds per strategy (paired by seed).")] = 20,
    strategies: Annotated[Optional[str], typer.Option(
        help=f"Comma-separated (default: all): {', '.join(BY_NAME)}.")] = None,
    scale: Annotated[Optional[float], typer.Option(
        help=f"Wall seconds per recorded second (default: a replayed epoch sleeps {EPOCH_WALL_S:g} s on average).")] = None,
    table: Annotated[Optional[Path], typer.Option(help="One task only; default: bench/tables/TASK.parquet.")] = None,
    budget: Annotated[Optional[float], typer.Option(
        help="Simulated seconds per run in place of 1.5x what random + FIFO needs (files named TABLE.budget-S).")] = None,
    first_seed: Annotated[int, typer.Option(help="Run seeds from this one to --seeds (fresh seeds only).")] = 0,
    minutes: Annotated[Optional[float], typer.Option(help="Start no run after this many minutes.")] = None,
    jobs: Annotated[int, typer.Option(help="Runs side by side in driver processes on one Ray instance "
                                           "(>1: the forked drivers once failed to join Ray).")] = 1,
    overhead_first: Annotated[bool, typer.Option(
        "--overhead", help="First measure Tune's overhead on a constant-epoch table.")] = False,
    summary: Annotated[bool, typer.Option("--summary", help="Only write TABLE.json/.png/.md from the runs file.")] = False,
    runs_only: Annotated[bool, typer.Option(
        "--runs-only", help="Write no summary (e.g. while holding a shared lock).")] = False,
    target_quantile: Annotated[float, typer.Option(
        help="Of the grid points' final values: the target.")] = TARGET_QUANTILE,
    held_out: Annotated[Optional[int], typer.Option(
        "--held-out", help="Summarise only the seeds from this one on (ones that played no part in "
                           "choosing the default) -> TABLE.held-out-N.*")] = None,
) -> None:
    """Search strategies compared on a recorded table, many seeds each -> bench/results/replay/."""
    if first_seed >= seeds and not summary:
        raise SystemExit(f"error: --first-seed {first_seed} leaves no seed below --seeds {seeds}")
    chosen = pick(strategies)
    setups = [make_setup(task, table, scale, budget) for task in tasks.split(",")]
    if overhead_first or not summary:
        with driver_pool(jobs, with_ray=overhead_first or any(s.search != "in-process" for s in chosen)) as drivers:
            for setup in setups if overhead_first else ():
                replay_report.save_overhead(setup, overhead(setup, drivers))
            campaign(setups, chosen, seeds, minutes, drivers, first_seed)
    for setup in setups if not runs_only else ():
        path = replay_report.write(setup, read_runs(setup.name), target_of(setup.table, target_quantile), target_quantile,
                                   {n: s.about for n, s in BY_NAME.items()}, held_out)
        say(f"wrote {path}")


def pick(names: str | None) -> list[Strategy]:
    chosen = list(STRATEGIES) if names is None else []
    for name in (names.split(",") if names else ()):
        if name not in BY_NAME:
            raise SystemExit(f"error: unknown strategy '{name}' ({', '.join(BY_NAME)})")
        chosen.append(BY_NAME[name])
    usable = []
    for s in chosen:
        why = available(s)
        if why:
            say(f"skipping {why}")
        else:
            usable.append(s)
    return usable


# --- Tune's overhead --------------------------------------------------------------------------


def constant_table(table: Table) -> Table:
    """The same grid and values, every epoch taking the table's mean epoch seconds and no point
    diverging (a diverged trial would end early and make the run shorter than its ideal)."""
    frame = table.frame.copy()
    frame["epoch_s"] = float(frame["epoch_s"].mean())
    frame[table.metric] = frame[table.metric].fillna(0.0)
    if "diverged" in frame:
        frame["diverged"] = False
    return Table(table.meta, frame)


def overhead_setup(setup: Setup) -> tuple[Setup, float]:
    """The constant-epoch replay of ``overhead`` and its ideal simulated seconds: as many trials as
    the task's budget holds, and three times the ideal as the budget."""
    const = dataclasses.replace(setup, table=constant_table(setup.table))
    s, epochs = float(const.table.frame["epoch_s"].iloc[0]), const.spec.max_epochs
    n = min(const.spec.num_samples, CONCURRENCY * int(const.budget_s // (epochs * s)))
    ideal = math.ceil(n / CONCURRENCY) * epochs * s
    const.spec = dataclasses.replace(const.spec, num_samples=n, time_budget_s=3 * ideal)
    return const, ideal


def overhead(setup: Setup, drivers) -> dict[str, Any]:
    """random + FIFO on the constant-epoch table, ``OVERHEAD_RUNS`` seeds (``jobs`` side by side
    as in a campaign), in Tune and in Optuna's own loop: with every epoch ``s`` seconds and two trials at a time, the
    last result is due at ceil(n / 2) * epochs * s; what lies beyond is the loop's (and the shared
    machine's)."""
    const, ideal = overhead_setup(setup)
    s, epochs, n = float(const.table.frame["epoch_s"].iloc[0]), const.spec.max_epochs, const.spec.num_samples
    jobs = drivers[0]._max_workers if drivers[0] else 1
    load = loadavg()
    seeds = range(max(jobs, OVERHEAD_RUNS))
    runs = list(in_parallel([(const, BY_NAME["random-fifo"], seed) for seed in seeds], drivers, None))
    plain = [in_process_run(const, seed, plain=True) for seed in seeds]
    tune_end = [max(r[0] for r in run["results"]) / setup.scale for run in runs]
    own_end = [max(r[0] for r in rows) / setup.scale for rows, _ in plain]
    per_slot = n * epochs / CONCURRENCY  # results each slot reports

    def per_result_ms(ends):
        return [1000 * (e - ideal) * setup.scale / per_slot for e in ends]

    return {"scale": setup.scale, "jobs": jobs, "epoch_s": s, "trials": n, "epochs": epochs, "ideal_sim_s": ideal,
            "measured_sim_s": tune_end, "overhead_pct": [100 * (e - ideal) / ideal for e in tune_end],
            "per_result_ms": per_result_ms(tune_end),
            "in_process_sim_s": own_end, "in_process_pct": [100 * (e - ideal) / ideal for e in own_end],
            "in_process_per_result_ms": per_result_ms(own_end), "load": load,
            "setup_s": [run["setup_s"] for run in runs], "wall_s": [run["wall_s"] for run in runs]}
