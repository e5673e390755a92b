"""Running a sweep: validate, load data once, start Ray, tune, evaluate the winner on test once.

Everything a user can get wrong (space file, task, data layout, resources) is checked before
Ray starts. Results land in the experiment folder ``<storage>/<name>/`` (``dlb_tune.experiment``):
Ray's trial folders, ``space.yaml`` and ``sweep.json`` (what ran, for ``resume``),
``results.parquet`` (one row per trial) and ``final.json`` (the winner and its one test-split
evaluation). ``--seeds`` re-runs come after the sweep, from ``dlb_tune.seeds.sweep_with_seeds``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from dlb_tune.cluster import NODE_TIMEOUT_S, ClusterError, node_watch, timed_out
from dlb_tune.datasets import resolve_data_dir
from dlb_tune.distributed import DRIVER_CPU, ddp_trial, release_placement_group_callback
from dlb_tune.experiment import (FINAL_FILE, LIVE_FILE, SPACE_SHA256, SWEEP_FILE, ReportError, check_name,
                                 check_space_unchanged, claimed, experiment_dir, experiment_log, file_in, read_json,
                                 read_space, read_sweep_options, resolve_storage, write_final, write_json, write_live,
                                 write_space, write_sweep_options)
from dlb_tune.logs import library_logs
from dlb_tune.progress import Progress
from dlb_tune.results import finish
from dlb_tune.space import SpaceError, SweepSpec, default_space_file, enqueued_point, load_space, search_as_run
from dlb_tune.storage import check_storage, ray_storage, shown
from dlb_tune.tasks import TaskModuleError, UnknownTask, get_task, load_task_module, portable_name
from dlb_tune.trainable import default_threads, tune_trial

# Ray, Optuna and torch are imported inside the functions that use them, to keep start-up fast:
# importing Ray takes seconds, and every mistake in the input is reported before it.

SMOKE_LIMIT = 512  # examples per split in a --smoke sweep
LOOPBACK = "127.0.0.1"  # where every service of a local sweep's Ray listens (loopback_only)
# Ray's switch for single-machine instances (meant for laptops on macOS and Windows): with it off,
# the node IP is 127.0.0.1, and a node whose IP is loopback starts its gRPC servers on loopback.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_IMPORTED = time.time()


class ResourceError(RuntimeError):
    """A resource request that cannot be satisfied. One line, for the user."""


@dataclass
class SweepOptions:
    """Run-level settings of a sweep; hyperparameters live in the search-space file."""

    task: str
    task_module: str | None = None  # a task from outside the package: a .py file or a dotted module name
    data_dir: str | None = None  # None: $DLB_TUNE_DATA, else the per-user default (datasets.default_data_dir)
    space: str | None = None  # None: search_spaces/<task>.yaml
    overrides: list[str] = field(default_factory=list)  # --set key=value
    objective: str | None = None  # a named multi-objective mode of the space file
    name: str | None = None  # None: <task>-<timestamp>
    storage: str | None = None  # None: $DLB_TUNE_RESULTS or ./dlb-tune-runs
    num_samples: int | None = None  # None: the space file's
    max_epochs: int | None = None  # None: the space file's
    time_budget_s: float | None = None  # None: the space file's
    cpus: float | None = None  # total for the sweep; None: all of this machine / the cluster
    gpus: float | None = None  # total for the sweep; None: all detected
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1  # >1: Ray Train data parallelism inside each trial
    ray_train: bool = False  # run trials as TorchTrainers even with one worker (slower to start)
    seed: int = 0
    search: str = "optuna"  # optuna | random
    scheduler: str = "asha"  # asha | fifo
    address: str | None = None  # join an existing cluster (auto, ray://...)
    node_timeout_s: float = NODE_TIMEOUT_S  # on a cluster: stop when trials wait this long for nodes
    limit: int | None = None  # examples per split (smoke runs)
    smoke: bool = False  # tiny model, 2 epochs, 2 samples, small data
    max_failures: int = 0  # retries of a failing trial
    seeds: int = 0  # >1: at the end, re-train the top configs with this many seeds and rank them
    enqueue: str | None = None  # a fixed space file (`dlb-tune best`): its config runs first, before the initial points

    def resolved_storage(self) -> str:
        return resolve_storage(self.storage)

    def resolved_data_dir(self) -> Path:
        return resolve_data_dir(self.data_dir)


def prepare_spec(opts: SweepOptions) -> SweepSpec:
    """The space file with --set, --smoke and the run-level overrides applied, validated."""
    if opts.task_module:  # recorded as imported, so resume and the reports import it again
        opts.task_module = load_task_module(opts.task_module)
    task_cls = get_task(opts.task)
    if (opts.workers_per_trial > 1 or opts.ray_train) and not task_cls.supports_ddp:
        raise ResourceError(f"task '{opts.task}' does not support --workers-per-trial > 1")
    path = Path(opts.space) if opts.space else default_space_file(opts.task)
    overrides = list(opts.overrides)
    if opts.smoke:  # the task's tiny config, unless the user fixed those keys themselves
        given = {o.partition("=")[0].strip() for o in overrides}
        overrides = [f"{k}={json.dumps(v)}" for k, v in task_cls.smoke.items() if k not in given] + overrides
    spec = load_space(path, overrides, opts.objective)
    if spec.task != opts.task:
        raise SpaceError(f"{path} is a space for task '{spec.task}', not '{opts.task}'")
    if opts.smoke:
        spec.max_epochs, spec.num_samples = min(spec.max_epochs, 2), min(spec.num_samples, 2)
        spec.grace_period = 1
    if opts.max_epochs is not None:
        spec.max_epochs = opts.max_epochs
        spec.grace_period = min(spec.grace_period, opts.max_epochs)
    if opts.num_samples is not None:
        spec.num_samples = opts.num_samples
    if opts.time_budget_s is not None:
        spec.time_budget_s = opts.time_budget_s
    if opts.enqueue:  # first: with --num-samples 1 it is the one config trained
        spec.initial.insert(0, enqueued_point(spec, opts.enqueue))
    if opts.search not in ("optuna", "random"):
        raise SpaceError(f"unknown search '{opts.search}' (optuna, random)")
    if opts.scheduler not in ("asha", "fifo"):
        raise SpaceError(f"unknown scheduler '{opts.scheduler}' (asha, fifo)")
    return spec


def load_data(spec: SweepSpec, opts: SweepOptions):
    limit = opts.limit if opts.limit is not None else (SMOKE_LIMIT if opts.smoke else None)
    return spec.task_cls.load_data(opts.resolved_data_dir(), spec.base_config(), limit)


# --- Ray ---------------------------------------------------------------------------------------


def start_ray(opts: SweepOptions) -> bool:
    """Start a local Ray instance (or join ``--address``); True if this call started it."""
    import logging

    if not opts.address:
        loopback_only()
    import ray

    quiet_libraries()
    if ray.is_initialized():
        return False
    common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    if opts.address:
        ray.init(address=opts.address, **common)
        return True
    import torch

    check_local_request(opts)
    gpus = torch.cuda.device_count() if opts.gpus is None else opts.gpus
    cpus = opts.cpus if opts.cpus is not None else os.cpu_count()
    ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=True, dashboard_host=LOOPBACK, **common)
    return True


def loopback_only() -> None:
    """Make the local Ray about to start listen on 127.0.0.1 only (GCS, raylet, workers, agents).

    Ray takes the machine's address as the node IP, and its gRPC servers listen on all interfaces
    unless the node IP is loopback; ``_node_ip_address="127.0.0.1"`` is rewritten to the machine's
    address. Its single-machine switch is read when ``ray`` is imported and inherited by the
    processes Ray starts; a user who set it keeps their choice.
    """
    if os.environ.setdefault(SINGLE_MACHINE_ENV, "0") != "0":
        return
    if "ray" in sys.modules:  # imported already (a notebook): the constant was read, so set it too
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


@contextmanager
def ray_session(opts: SweepOptions) -> Iterator[None]:
    """Ray for the length of the block: started (and shut down after) here unless already running."""
    started = start_ray(opts)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def check_local_request(opts: SweepOptions) -> None:
    """Fail at once, before any data is loaded, on a request this machine cannot meet."""
    if opts.address:
        return  # a cluster's resources are checked once connected (check_resources)
    import torch

    detected = torch.cuda.device_count()
    wanted = opts.gpus if opts.gpus is not None else (opts.gpus_per_trial * max(1, opts.workers_per_trial))
    if wanted > detected:
        raise ResourceError(
            f"{wanted:g} GPU(s) asked for, but this machine has {detected} "
            f"(torch.cuda.device_count()); use --address to run on a GPU cluster"
        )


def quiet_libraries() -> None:
    """Our progress lines replace Ray's tables and Optuna's per-trial log."""
    import logging

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no experiment tables
    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)


def check_resources(opts: SweepOptions) -> tuple[int, dict[str, float]]:
    """Concurrency and per-trial resources, or a ResourceError if no trial could ever start."""
    import ray

    if opts.address:
        return check_cluster_request(opts)

    total = ray.cluster_resources()
    cpus = min(opts.cpus, total.get("CPU", 0)) if opts.cpus is not None else total.get("CPU", 0)
    gpus = min(opts.gpus, total.get("GPU", 0)) if opts.gpus is not None else total.get("GPU", 0)
    if opts.gpus is not None and opts.gpus > total.get("GPU", 0):
        raise ResourceError(f"--gpus {opts.gpus:g} asked for, but the Ray cluster has {total.get('GPU', 0):g} GPU(s)")
    workers = max(1, opts.workers_per_trial)
    per_trial = {"cpu": opts.cpus_per_trial * workers, "gpu": opts.gpus_per_trial * workers}
    if opts.cpus_per_trial <= 0:
        raise ResourceError("--cpus-per-trial must be > 0 (use a fraction such as 0.5 to share a core)")
    if per_trial["cpu"] > cpus:
        raise ResourceError(f"a trial needs {per_trial['cpu']:g} CPU(s) but the sweep may use {cpus:g}")
    if per_trial["gpu"] > gpus:
        raise ResourceError(f"a trial needs {per_trial['gpu']:g} GPU(s) but the sweep may use {gpus:g}")
    concurrency = int(cpus // per_trial["cpu"])
    if per_trial["gpu"] > 0:
        concurrency = min(concurrency, int(gpus // per_trial["gpu"] + 1e-9))
    return max(1, concurrency), per_trial


def check_cluster_request(opts: SweepOptions) -> tuple[int, dict[str, float]]:
    """``check_resources`` on a cluster: against the node types it can launch, not those up now."""
    from dlb_tune.cluster import cluster_capacity, plan_concurrency, trial_bundle

    if opts.cpus_per_trial <= 0:
        raise ResourceError("--cpus-per-trial must be > 0 (use a fraction such as 0.5 to share a core)")
    workers = max(1, opts.workers_per_trial)
    try:
        concurrency = plan_concurrency(cluster_capacity(), trial_bundle(opts.cpus_per_trial, opts.gpus_per_trial),
                                       workers, cpus=opts.cpus, gpus=opts.gpus)
    except ClusterError as e:
        raise ResourceError(str(e)) from None
    return concurrency, {"cpu": opts.cpus_per_trial * workers, "gpu": opts.gpus_per_trial * workers}


def warn_if_storage_not_shared(opts: SweepOptions, echo: Callable[[str], None]) -> None:
    """On several nodes, checkpoints must be readable from every node: say so if they may not be."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and "://" not in opts.resolved_storage():
        echo(f"warning: {len(nodes)} nodes but --storage {opts.resolved_storage()} is a local path; "
             f"unless it is a file system shared by every node, use an s3:// or gs:// URI so trials "
             f"can resume on another node")


def uses_ray_train(opts: SweepOptions) -> bool:
    return opts.workers_per_trial > 1 or opts.ray_train


def make_trainable(spec: SweepSpec, opts: SweepOptions, data: Any, per_trial: dict[str, float]):
    """A plain function trainable, or (``--workers-per-trial N``) one that drives a TorchTrainer."""
    import ray
    from ray import tune

    common = dict(task_name=portable_name(spec.task), metric=spec.metric, mode=spec.mode, max_epochs=spec.max_epochs,
                  seed=opts.seed, threads=default_threads(opts.cpus_per_trial), use_gpu=opts.gpus_per_trial > 0)
    if not uses_ray_train(opts):
        fn = tune.with_parameters(tune_trial, data=data, **common)
        return tune.with_resources(fn, {"cpu": per_trial["cpu"], "gpu": per_trial["gpu"]})
    # The workers hold the CPUs and GPUs; the driving trainable only waits for them. The data
    # goes to the object store once, and workers fetch it by reference (nested, so Tune does
    # not resolve it in the driving process).
    fn = tune.with_parameters(ddp_trial, data_ref=[ray.put(data)], workers=opts.workers_per_trial,
                              cpus_per_worker=opts.cpus_per_trial, gpus_per_worker=opts.gpus_per_trial, **common)
    return tune.with_resources(fn, {"cpu": DRIVER_CPU})


def make_searcher(spec: SweepSpec, opts: SweepOptions, concurrency: int, echo: Callable[[str], None] = print):
    if opts.search == "random" or not spec.searched():  # Optuna needs something to search
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # Tune ignores max_concurrent_trials for a SearchGenerator like this one: it must be told
        return BasicVariantGenerator(points_to_evaluate=spec.initial or None, random_state=opts.seed,
                                     max_concurrent=concurrency)
    import optuna

    from dlb_tune.search import TruthfulOptunaSearch, journal_storage, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pairs = spec.objective_pairs()
    metric, mode = (spec.metric, spec.mode) if len(pairs) == 1 else ([m for m, _ in pairs], [d for _, d in pairs])
    return TruthfulOptunaSearch(metric=metric, mode=mode, max_epochs=spec.max_epochs, points_to_evaluate=spec.initial,
                                sampler=make_sampler(spec.search, opts.seed, concurrency),
                                storage=journal_storage(experiment_dir(opts.name, opts.storage), echo),
                                study_name=opts.name)


def make_scheduler(spec: SweepSpec, opts: SweepOptions):
    from ray.tune.schedulers import FIFOScheduler

    if opts.scheduler == "fifo":
        return FIFOScheduler()
    return _recording_asha()(
        metric=spec.metric,
        mode=spec.mode,
        max_t=spec.max_epochs,
        grace_period=spec.grace_period,
        reduction_factor=spec.reduction_factor,
        time_attr="epoch",
    )


def _recording_asha():
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        """ASHA that remembers which trials it stopped, so the summary can count them."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.max_t = kwargs["max_t"]
            self.stopped: set[str] = set()

        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP and result.get("epoch", 0) < self.max_t:
                self.stopped.add(trial.trial_id)
            return action

    return RecordingASHA


# --- the sweep --------------------------------------------------------------------------------


def run_sweep(opts: SweepOptions, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Validate, run and summarise a sweep. Returns what ``final.json`` holds.

    ``opts.seeds`` is not acted on here: ``seeds.sweep_with_seeds`` (what ``dlb-tune sweep``
    runs) re-runs the top configs after the sweep.
    """
    with sweep_session(opts, echo) as (final, _):
        return final


@contextmanager
def sweep_session(opts: SweepOptions, echo: Callable[[str], None] = print) -> Iterator[tuple[dict[str, Any], Any]]:
    """Run a sweep; inside the block, what ``final.json`` holds and the loaded data, Ray still up
    (``--seeds`` re-runs on both). The name is checked and the experiment claimed first."""
    opts.name = opts.name or f"{opts.task}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    check_name(opts.name)
    check_storage(opts.resolved_storage())
    with claimed(experiment_dir(opts.name, opts.storage), opts.name), _claimed_session(opts, echo) as session:
        yield session


@contextmanager
def _claimed_session(opts: SweepOptions, echo: Callable[[str], None]) -> Iterator[tuple[dict[str, Any], Any]]:
    """``sweep_session`` once the experiment is this process's."""
    spec = prepare_spec(opts)
    check_local_request(opts)
    timings = {"command_start": command_start()}
    t_load = time.time()
    data = load_data(spec, opts)
    timings["data_s"] = time.time() - t_load
    echo(f"{spec.task}: data loaded in {timings['data_s']:.1f}s; "
         f"{spec.num_samples} trials x up to {spec.max_epochs} epochs, search {search_name(spec, opts)}, "
         f"scheduler {opts.scheduler}, metric {spec.metric} ({spec.mode})")
    t_ray = time.time()
    with ray_session(opts):
        timings["ray_start_s"] = time.time() - t_ray
        concurrency, per_trial = check_resources(opts)
        warn_if_storage_not_shared(opts, echo)
        exp_dir = experiment_dir(opts.name, opts.storage)
        spec = spec_as_run(spec, opts, concurrency)
        write_space(exp_dir, spec)
        write_sweep_options(exp_dir, opts)
        echo(f"results: {exp_dir}  ({concurrency} trial(s) at a time, {per_trial['cpu']:g} CPU / "
             f"{per_trial['gpu']:g} GPU each)")
        with library_logs(experiment_log(exp_dir)), live_sweep(exp_dir, opts, concurrency, echo):
            tuner = build_tuner(spec, opts, data, concurrency, per_trial, echo)
            final = fit_and_finish(tuner, spec, opts, data, exp_dir, echo, timings)
        echo(f"next: {_command('report', opts)}; {_command('best', opts)}")
        yield final, data


def spec_as_run(spec: SweepSpec, opts: SweepOptions, concurrency: int) -> SweepSpec:
    """The spec with the search settings the sweep runs, as space.yaml records them; every
    reader parses that file back (tests/test_round_trip.py)."""
    if opts.search != "optuna":
        return spec
    return replace(spec, search=search_as_run(spec.search, concurrency))


def search_name(spec: SweepSpec, opts: SweepOptions) -> str:
    """The searcher as the sweep's first line names it: Optuna's sampler when it is not TPE."""
    sampler = spec.search.get("sampler", "tpe") if opts.search == "optuna" else None
    return f"{opts.search} ({sampler} sampler)" if sampler not in (None, "tpe") else opts.search


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


def dashboard_url() -> str | None:
    """The dashboard's host:port, as ``ray.init``'s context reports it (None without one)."""
    from ray._private.worker import get_dashboard_url  # what RayContext.dashboard_url reads

    try:
        return get_dashboard_url() or None
    except Exception:  # noqa: BLE001 - an address to print is never worth failing a sweep
        return None


def build_tuner(spec, opts, data, concurrency, per_trial, echo, restore_path: str | None = None):
    from ray import tune

    trainable = make_trainable(spec, opts, data, per_trial)
    if restore_path is not None:
        path, fs = ray_storage(restore_path)
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False, storage_filesystem=fs)
    storage_path, storage_fs = ray_storage(opts.resolved_storage())
    return tune.Tuner(
        trainable,
        param_space=spec.param_space(),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(spec, opts, concurrency, echo),
            scheduler=make_scheduler(spec, opts),
            num_samples=spec.num_samples,
            max_concurrent_trials=concurrency,
            time_budget_s=spec.time_budget_s,
            # Plain trials reuse their actors (under 1 s to start). A TorchTrainer trial must not:
            # its Train controller frees the workers' placement group only when it goes away.
            reuse_actors=not uses_ray_train(opts),
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=opts.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1,  # Ray also keeps the latest, so resume and "best" both work
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            callbacks=[Progress(spec, echo, exp_dir=experiment_dir(opts.name, opts.storage), concurrency=concurrency,
                                scheduler=opts.scheduler)]
            + ([release_placement_group_callback()] if uses_ray_train(opts) else [])
            + ([node_watch(per_trial, opts.node_timeout_s, echo)] if opts.address else []),
            verbose=0,
        ),
    )


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def fit_and_finish(tuner, spec, opts, data, exp_dir: str, echo, timings: dict[str, float] | None = None) -> dict[str, Any]:
    t0 = time.time()
    with GracefulInterrupt() as guard:
        grid = tuner.fit()
    wall = time.time() - t0
    stopped = _asha_stopped(tuner)
    no_nodes = timed_out(tuner)
    final = finish(grid, spec, opts, data, exp_dir, wall, stopped, echo, interrupted=guard.interrupted or bool(no_nodes),
                   timings=timings)
    states = _optuna_states(tuner)
    if states:  # what Optuna was told about each trial: COMPLETE, PRUNED (stopped early) or FAIL
        final["optuna_states"] = states
        write_final(exp_dir, final)
    if no_nodes:
        raise ResourceError(f"{no_nodes}; `dlb-tune resume {opts.name}` continues once nodes can join")
    return final


class GracefulInterrupt:
    """Ctrl-C or SIGTERM ends the sweep gracefully, and we know it happened.

    Tune's own SIGINT handler stops the run but leaves no trace of why; here SIGINT and SIGTERM
    set ``interrupted`` and forward SIGUSR1, which Tune treats as the same graceful stop (it
    saves the experiment state, so ``dlb-tune resume`` continues every unfinished trial).
    A second Ctrl-C aborts at once.
    """

    def __enter__(self):
        import signal
        import threading

        self.interrupted = False
        self.saved: dict = {}
        if threading.current_thread() is not threading.main_thread():
            return self
        self.env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.saved:
            if self.env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self.env
        return False


def _optuna_states(tuner) -> list[dict[str, Any]]:
    searcher = getattr(getattr(tuner._local_tuner, "_tune_config", None), "search_alg", None)
    return searcher.trial_states() if hasattr(searcher, "trial_states") else []


def _asha_stopped(tuner) -> set[str]:
    try:
        sched = tuner._local_tuner._tune_config.scheduler
    except AttributeError:
        return set()
    return set(getattr(sched, "stopped", set()))


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
        return _resumed(spec, opts, exp_dir, echo)


def _resumed(spec: SweepSpec, opts: SweepOptions, exp_dir: str, echo) -> dict[str, Any]:
    from ray import tune

    timings = {"command_start": command_start()}
    t_load = time.time()
    data = load_data(spec, opts)
    timings["data_s"], t_ray = time.time() - t_load, time.time()
    with ray_session(opts):
        timings["ray_start_s"] = time.time() - t_ray
        concurrency, per_trial = check_resources(opts)
        if not tune.Tuner.can_restore(*ray_storage(exp_dir)):
            raise SpaceError(f"{exp_dir} holds no Tune experiment state to resume")
        with library_logs(experiment_log(exp_dir)), live_sweep(exp_dir, opts, concurrency, echo):
            tuner = build_tuner(spec, opts, data, concurrency, per_trial, echo, restore_path=exp_dir)
            return fit_and_finish(tuner, spec, opts, data, exp_dir, echo, timings)


def recorded_options(exp_dir: str, name: str, storage: str | None) -> tuple[SweepOptions, str | None]:
    """``sweep.json``'s options, and the SHA-256 of space.yaml recorded with them."""
    try:
        saved = read_sweep_options(exp_dir)
    except (FileNotFoundError, OSError):
        raise SpaceError(f"no sweep named '{name}' in {shown(resolve_storage(storage))}") from None
    space_sha = saved.pop(SPACE_SHA256, None)
    unknown = sorted(set(saved) - {f.name for f in fields(SweepOptions)})
    if unknown:
        raise ReportError(f"{shown(file_in(exp_dir, SWEEP_FILE))}: unknown option(s) {', '.join(unknown)} "
                          f"(written by another version of dlb-tune?)")
    return SweepOptions(**saved), space_sha


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
