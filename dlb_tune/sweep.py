"""Running a sweep: validate, load data once, start Ray, tune, evaluate the winner on test once.

Everything a user can get wrong (space file, task, data layout, resources) is checked before
Ray starts. ``run`` is the one way a sweep runs, fresh (``run_sweep``) or continued (``resume_sweep``);
``dlb_tune.engine`` holds the Ray side. Results land in the experiment folder
``<storage>/<name>/`` (``dlb_tune.experiment``): Ray's trial folders, ``space.yaml`` and
``sweep.json`` (what ran, for ``resume``), ``results.parquet`` (one row per trial) and
``final.json`` (the winner and its one test-split evaluation). A step after the sweep (the
``--seeds`` re-runs, ``dlb_tune.reruns``) runs on its Ray and data: ``run_sweep(after=...)``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from dlb_tune.distributions import SpaceError
from dlb_tune.engine import (check_local_request, check_resources, dashboard_url, fit, ray_session, sweep_tuner,
                             warn_if_storage_not_shared)
from dlb_tune.experiment import (FINAL_FILE, LIVE_FILE, check_name, check_space_unchanged,
                                 claimed, experiment_dir, experiment_log, file_in, read_space, recorded_options,
                                 resolve_storage, write_final, write_live, write_space, write_sweep_options)
from dlb_tune.storage import read_json, write_json
from dlb_tune.board import after_sweep
from dlb_tune.finish import finish
from dlb_tune.logs import library_logs
from dlb_tune.options import ResourceError, SweepOptions
from dlb_tune.prepare import load_data, prepare_spec
from dlb_tune.space import SweepSpec, search_as_run, with_sampler
from dlb_tune.storage import check_storage, ray_storage, shown
from dlb_tune.summary import summary_lines
from dlb_tune.tasks import TaskModuleError, UnknownTask, get_task, load_task_module

_IMPORTED = time.time()
Step = Callable[[dict[str, Any], Any], None]  # a step after the sweep: (what final.json holds, the data)


@contextmanager
def run(spec: SweepSpec, opts: SweepOptions, echo: Callable[[str], None], restore: str | None = None
        ) -> Iterator[tuple[dict[str, Any], Any]]:
    """A sweep from its validated spec, or (``restore``: its experiment folder) one continued;
    inside the block, what ``final.json`` holds and the loaded data, Ray still up."""
    from ray import tune

    timings = {"command_start": command_start()}
    t_load = time.time()
    data = load_data(spec, opts)
    timings["data_s"], t_ray = time.time() - t_load, time.time()
    if restore is None:
        echo(f"{spec.task}: data loaded in {timings['data_s']:.1f}s; "
             f"{spec.num_samples} trials x up to {spec.max_epochs} epochs, sampler {sampler_name(spec, opts)}, "
             f"scheduler {opts.scheduler}, metric {spec.metric} ({spec.mode})")
    with ray_session(opts):
        timings["ray_start_s"] = time.time() - t_ray
        concurrency, per_trial = check_resources(opts)
        exp_dir = experiment_dir(opts.name, opts.storage)
        if restore is None:
            warn_if_storage_not_shared(opts, echo)
            spec = spec_as_run(spec, opts, concurrency)
            write_space(exp_dir, spec)
            write_sweep_options(exp_dir, opts)
            echo(f"results: {exp_dir}  ({concurrency} trial(s) at a time, {per_trial['cpu']:g} CPU / "
                 f"{per_trial['gpu']:g} GPU each)")
        elif not tune.Tuner.can_restore(*ray_storage(restore)):
            raise SpaceError(f"{restore} holds no Tune experiment state to resume")
        with library_logs(experiment_log(exp_dir)), live_sweep(exp_dir, opts, concurrency, echo):
            fitted = fit(sweep_tuner(spec, opts, data, concurrency, per_trial, echo, restore=restore))
            final, table = finish(fitted.grid, spec, opts, data, exp_dir, fitted.wall_s, fitted.stopped,
                                  interrupted=fitted.interrupted, timings=timings)
            if fitted.optuna_states:  # what Optuna was told about each trial: COMPLETE, PRUNED or FAIL
                final["optuna_states"] = fitted.optuna_states
            if spec.max_params is not None:  # proposals the searcher refused: never trials, so counted apart
                final["max_params"] = spec.max_params
                final["trials"]["rejected"] = fitted.rejected
            after_sweep(exp_dir, echo)  # TensorBoard: the HParams config and the task's test figures
            final["command_s"] = round(time.time() - timings["command_start"], 1)  # the whole command's
            write_final(exp_dir, final)
            for line in summary_lines(final, table):
                echo(line)
            if fitted.no_nodes:
                raise ResourceError(f"{fitted.no_nodes}; `dlb-tune resume {opts.name}` continues once nodes can join")
        if restore is None:
            echo(f"next: {_command('report', opts)}; {_command('best', opts)}")
        yield final, data


def run_sweep(opts: SweepOptions, echo: Callable[[str], None] = print, after: Step | None = None) -> dict[str, Any]:
    """Validate, run and summarise a sweep; ``after`` (the ``--seeds`` re-runs) then runs on its
    Ray and data unless it was interrupted. Returns what ``final.json`` holds. The name is
    checked and the experiment claimed before anything else."""
    opts.name = opts.name or f"{opts.task}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    check_name(opts.name)
    check_storage(opts.resolved_storage())
    with claimed(experiment_dir(opts.name, opts.storage), opts.name):
        spec = prepare_spec(opts)
        check_local_request(opts)
        with run(spec, opts, echo) as (final, data):
            if after is not None and not final.get("interrupted"):
                after(final, data)
    return final



def resume_sweep(name: str, storage: str | None, data_dir: str | None, echo=print,
                 task_module: str | None = None) -> dict[str, Any]:
    """Continue an interrupted sweep: unfinished trials resume from their last checkpoint.

    What ``sweep.json`` recorded is shown before it is used (the Ray address, the data folder), and
    a task module it names is imported only when given again here (``task_module``)."""
    check_storage(resolve_storage(storage))
    exp_dir = experiment_dir(name, storage)
    opts, space_sha = recorded_options(exp_dir, name, storage)
    final = read_json(file_in(exp_dir, FINAL_FILE))
    if final and not final.get("interrupted"):  # its test split is spent: nothing may run again
        read_space(exp_dir)  # read as data, so that a damaged folder says so, finished or not
        echo(f"nothing to resume: sweep '{name}' finished; see `{_command('results', opts)}`")
        return final
    with claimed(exp_dir, name, resuming=True):
        check_space_unchanged(exp_dir, space_sha)
        opts.storage = storage or opts.storage
        opts.data_dir = data_dir or opts.data_dir
        import_recorded_task(opts, name, task_module)
        spec = read_space(exp_dir, checked=True)
        echo(f"resuming {shown(exp_dir)}: task {spec.task}, data folder {opts.resolved_data_dir()}, "
             f"Ray {opts.address or 'started here (local)'} (from sweep.json; --data-dir replaces the folder)")
        with run(spec, opts, echo, restore=exp_dir) as (final, _):
            return final


def spec_as_run(spec: SweepSpec, opts: SweepOptions, concurrency: int) -> SweepSpec:
    """The spec with the search settings the sweep runs, as space.yaml records them; every
    reader parses that file back (tests/test_round_trip.py)."""
    return replace(spec, search=search_as_run(with_sampler(spec.search, opts.sampler), concurrency))


def sampler_name(spec: SweepSpec, opts: SweepOptions) -> str:
    """The sampler as the sweep's first line names it: the one that runs (``engine.make_searcher``)."""
    if not spec.searched():
        return "none (nothing searched)"
    return with_sampler(spec.search, opts.sampler).get("sampler", "tpe")


def command_start() -> float:
    """When this process started (its imports included), so the wall time printed is the command's.
    From /proc on Linux; elsewhere, when this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


def _command(verb: str, opts: SweepOptions, extra: str = "") -> str:
    storage = f" --storage {opts.storage}" if opts.storage else ""
    return f"dlb-tune {verb} {opts.name}{storage}{extra}"


@contextmanager
def live_sweep(exp_dir: str, opts: SweepOptions, concurrency: int, echo: Callable[[str], None]) -> Iterator[None]:
    """``live.json`` for ``dlb-tune status`` while the trials run; where to watch them from."""
    dashboard = dashboard_url()
    write_live(exp_dir, {"started": time.time(), "concurrency": concurrency, "dashboard": dashboard})
    if dashboard:
        echo(f"Ray dashboard: http://{dashboard.removeprefix('http://')}")
    echo(f"watch it: {_command('status', opts, ' --watch')}   or   {_command('tensorboard', opts)}")
    try:
        yield
    finally:
        live = read_json(file_in(exp_dir, LIVE_FILE)) or {}
        write_json(file_in(exp_dir, LIVE_FILE), {**live, "ended": time.time()})


def import_recorded_task(opts: SweepOptions, name: str, task_module: str | None) -> None:
    """The task to run: from ``--task-module`` when given; installed code otherwise. A module that
    sweep.json merely names is not imported: whoever wrote the folder chose it."""
    if task_module:
        opts.task_module = load_task_module(task_module)
        return
    try:
        get_task(opts.task)
    except UnknownTask:
        if not opts.task_module:
            raise
        raise TaskModuleError(f"task '{opts.task}' of '{name}' comes from {opts.task_module} (sweep.json); resuming "
                              f"runs it: add --task-module {opts.task_module} if you trust that file") from None
