"""The Ray side of a sweep: one Ray session, the resources a sweep may use, and the Tuner.

Everything that touches Ray lives here, built from a validated ``SweepSpec`` and the run's
``SweepOptions``: starting or joining Ray (a local one listens on 127.0.0.1 only), checking a
resource request against the machine or the cluster, the trainable, the searcher, the scheduler,
the callbacks, and the one place a Tuner is made and fitted (``tuner``, ``fit``). The sweep itself
(``dlb_tune.sweep``) and the ``--seeds`` re-runs (``dlb_tune.reruns``) drive it. Importing this
module imports Ray: the commands that only read a sweep never do.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from dlb_tune.cluster import (NODE_POLL_S, ClusterError, WatchState, cluster_capacity, plain_resources,
                              plan_concurrency, trial_bundle)
from dlb_tune.distributed import DRIVER_CPU, PLACEMENT_GROUP_KEY, ddp_trial
from dlb_tune.experiment import JOURNAL_FILE, experiment_dir, file_in
from dlb_tune.options import ResourceError, SweepOptions
from dlb_tune.param_limit import param_limit
from dlb_tune.progress import Progress
from dlb_tune.space import SweepSpec, with_sampler
from dlb_tune.storage import ray_storage
from dlb_tune.tasks import portable_name
from dlb_tune.trainable import default_threads, tune_trial

LOOPBACK = "127.0.0.1"  # where every service of a local sweep's Ray listens (loopback_only)
# Ray's switch for single-machine instances (meant for laptops on macOS and Windows): with it off,
# the node IP is 127.0.0.1, and a node whose IP is loopback starts its gRPC servers on loopback.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


# --- one Ray session ---------------------------------------------------------------------------


def loopback_only() -> None:
    """Make the local Ray about to start listen on 127.0.0.1 only (GCS, raylet, workers, agents).

    Ray takes the machine's address as the node IP, and its gRPC servers listen on all interfaces
    unless the node IP is loopback; ``_node_ip_address="127.0.0.1"`` is rewritten to the machine's
    address. Its single-machine switch is read when ``ray`` is imported and inherited by the
    processes Ray starts, so it is set here as well as in the environment; a user who set the
    variable keeps their choice.
    """
    if os.environ.setdefault(SINGLE_MACHINE_ENV, "0") != "0":
        return
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def quiet_libraries() -> None:
    """Our progress lines replace Ray's tables and Optuna's per-trial log."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no experiment tables
    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)


def start_ray(opts: SweepOptions) -> bool:
    """Start a local Ray instance (or join ``--address``); True if this call started it."""
    if not opts.address:
        loopback_only()
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


@contextmanager
def ray_session(opts: SweepOptions) -> Iterator[None]:
    """Ray for the length of the block: started (and shut down after) here unless already running."""
    started = start_ray(opts)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def dashboard_url() -> str | None:
    """The dashboard's host:port, as ``ray.init``'s context reports it (None without one)."""
    from ray._private.worker import get_dashboard_url  # what RayContext.dashboard_url reads

    try:
        return get_dashboard_url() or None
    except Exception:  # noqa: BLE001 - an address to print is never worth failing a sweep
        return None


# --- what the sweep may use --------------------------------------------------------------------


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


def check_resources(opts: SweepOptions) -> tuple[int, dict[str, float]]:
    """Concurrency and per-trial resources, or a ResourceError if no trial could ever start."""
    if opts.cpus_per_trial <= 0:
        raise ResourceError("--cpus-per-trial must be > 0 (use a fraction such as 0.5 to share a core)")
    workers = max(1, opts.workers_per_trial)
    per_trial = {"cpu": opts.cpus_per_trial * workers, "gpu": opts.gpus_per_trial * workers}
    if opts.address:  # against the node types the cluster can launch, not those up now
        try:
            concurrency = plan_concurrency(cluster_capacity(), trial_bundle(opts.cpus_per_trial, opts.gpus_per_trial),
                                           workers, cpus=opts.cpus, gpus=opts.gpus)
        except ClusterError as e:
            raise ResourceError(str(e)) from None
        return concurrency, per_trial
    total = ray.cluster_resources()
    cpus = min(opts.cpus, total.get("CPU", 0)) if opts.cpus is not None else total.get("CPU", 0)
    gpus = min(opts.gpus, total.get("GPU", 0)) if opts.gpus is not None else total.get("GPU", 0)
    if opts.gpus is not None and opts.gpus > total.get("GPU", 0):
        raise ResourceError(f"--gpus {opts.gpus:g} asked for, but the Ray cluster has {total.get('GPU', 0):g} GPU(s)")
    if per_trial["cpu"] > cpus:
        raise ResourceError(f"a trial needs {per_trial['cpu']:g} CPU(s) but the sweep may use {cpus:g}")
    if per_trial["gpu"] > gpus:
        raise ResourceError(f"a trial needs {per_trial['gpu']:g} GPU(s) but the sweep may use {gpus:g}")
    concurrency = int(cpus // per_trial["cpu"])
    if per_trial["gpu"] > 0:
        concurrency = min(concurrency, int(gpus // per_trial["gpu"] + 1e-9))
    return max(1, concurrency), per_trial


def warn_if_storage_not_shared(opts: SweepOptions, echo: Callable[[str], None]) -> None:
    """On several nodes, checkpoints must be readable from every node: say so if they may not be."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and "://" not in opts.resolved_storage():
        echo(f"warning: {len(nodes)} nodes but --storage {opts.resolved_storage()} is a local path; "
             f"unless it is a file system shared by every node, use an s3:// or gs:// URI so trials "
             f"can resume on another node")


# --- the trainable, searcher and scheduler -----------------------------------------------------


def make_trainable(spec: SweepSpec, opts: SweepOptions, data: Any, per_trial: dict[str, float]):
    """A plain function trainable, or (``--workers-per-trial N``) one that drives a TorchTrainer."""
    common = dict(task_name=portable_name(spec.task), metric=spec.metric, mode=spec.mode, max_epochs=spec.max_epochs,
                  seed=opts.seed, threads=default_threads(opts.cpus_per_trial), use_gpu=opts.gpus_per_trial > 0)
    if not opts.data_parallel:
        fn = tune.with_parameters(tune_trial, data=data, **common)
        return tune.with_resources(fn, {"cpu": per_trial["cpu"], "gpu": per_trial["gpu"]})
    # The workers hold the CPUs and GPUs; the driving trainable only waits for them. The data
    # goes to the object store once, and workers fetch it by reference (nested, so Tune does
    # not resolve it in the driving process).
    fn = tune.with_parameters(ddp_trial, data_ref=[ray.put(data)], workers=opts.workers_per_trial,
                              cpus_per_worker=opts.cpus_per_trial, gpus_per_worker=opts.gpus_per_trial, **common)
    return tune.with_resources(fn, {"cpu": DRIVER_CPU})


def make_searcher(spec: SweepSpec, opts: SweepOptions, concurrency: int, echo: Callable[[str], None] = print):
    if spec.compare_by:
        return cell_searcher(spec, opts, concurrency, echo)
    if not spec.searched():  # Optuna needs something to search
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # Tune ignores max_concurrent_trials for a SearchGenerator like this one: it must be told
        return BasicVariantGenerator(points_to_evaluate=spec.initial or None, random_state=opts.seed,
                                     max_concurrent=concurrency)
    import optuna

    from dlb_tune.search import TruthfulOptunaSearch, journal_storage, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric, mode = _goal_args(spec)
    return TruthfulOptunaSearch(metric=metric, mode=mode, max_epochs=spec.max_epochs, points_to_evaluate=spec.initial,
                                sampler=make_sampler(with_sampler(spec.search, opts.sampler), opts.seed, concurrency),
                                storage=journal_storage(file_in(experiment_dir(opts.name, opts.storage), JOURNAL_FILE), echo),
                                study_name=opts.name, limit=param_limit(spec))


def _goal_args(spec: SweepSpec) -> tuple[Any, Any]:
    """``metric`` and ``mode`` as Ray's OptunaSearch takes them: lists for several objectives."""
    goals = spec.goals()
    return (spec.metric, spec.mode) if len(goals) == 1 else ([g.metric for g in goals], [g.mode for g in goals])


def cell_searcher(spec: SweepSpec, opts: SweepOptions, concurrency: int, echo: Callable[[str], None]):
    """``compare_by``: an equal share of the trials and a sampler (and study) of its own for each
    value of the parameter. ``--sampler random`` samples each value's other parameters at random."""
    import optuna

    from dlb_tune.cells import CellSearch, cell_study_name
    from dlb_tune.search import TruthfulOptunaSearch, journal_storage, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric, mode = _goal_args(spec)
    values = spec.params[spec.compare_by].values
    storage = journal_storage(file_in(experiment_dir(opts.name, opts.storage), JOURNAL_FILE), echo)
    settings = with_sampler(spec.search, opts.sampler)
    # the share of the concurrency one value's sampler sees at once (its constant liar, if TPE)
    share = max(1, -(-concurrency // len(values)))

    def one(value: Any, points: list[dict]) -> TruthfulOptunaSearch:
        seed = opts.seed + values.index(value)  # a sampler of its own, reproducible from the sweep's seed
        return TruthfulOptunaSearch(metric=metric, mode=mode, max_epochs=spec.max_epochs, points_to_evaluate=points,
                                    sampler=make_sampler(settings, seed, share), storage=storage,
                                    study_name=cell_study_name(opts.name, spec.compare_by, value),
                                    limit=param_limit(spec, {spec.compare_by: value}))  # the value sizes the net too

    return CellSearch(spec.compare_by, values, one, points_to_evaluate=spec.initial, metric=metric, mode=mode)


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


def make_scheduler(spec: SweepSpec, opts: SweepOptions):
    if opts.scheduler == "fifo":
        return FIFOScheduler()
    return RecordingASHA(metric=spec.metric, mode=spec.mode, max_t=spec.max_epochs, grace_period=spec.grace_period,
                         reduction_factor=spec.reduction_factor, time_attr="epoch")


# --- callbacks ---------------------------------------------------------------------------------


class NodeWatch(tune.Callback):
    """On a cluster: 'waiting for nodes' lines, joined nodes, and the --node-timeout stop."""

    def __init__(self, per_trial: dict[str, float], timeout_s: float, echo: Callable[[str], None]):
        self.state = WatchState(timeout_s, trial_bundle(per_trial["cpu"], per_trial["gpu"]))
        self.echo = echo
        self.t0 = time.time()
        self.polled = -math.inf
        self.stopped = False

    def on_step_begin(self, iteration, trials, **info):
        now = time.monotonic()
        nodes = None
        if now - self.polled >= NODE_POLL_S:
            self.polled = now
            # a node counts once it shows what it holds (a booting one shows nothing yet)
            nodes = {n["NodeID"]: plain_resources(n["Resources"]) for n in ray.nodes() if n.get("Alive")}
            nodes = {k: v for k, v in nodes.items() if v}
        pending = [t.trial_id for t in trials if t.status == Trial.PENDING]
        running = any(t.status == Trial.RUNNING for t in trials)
        for line in self.state.step(now, pending, running, nodes):
            self.echo(f"[{time.time() - self.t0:6.0f}s] {'cluster':>12}  {line}")
        if self.state.timed_out and not self.stopped:
            self.stopped = True
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop: resumable, like Ctrl-C


class ReleaseTrainPlacementGroup(tune.Callback):
    """Frees a data-parallel trial's workers when the trial ends.

    Ray 2.60 leaves the Train workers' placement group reserved when Tune stops the trial (ASHA,
    or reaching ``max_t``) before ``TorchTrainer.fit()`` returns: its reservation is never freed
    and later trials wait forever. The trial's rank 0 reports the group's id; this removes it.
    """

    def _release(self, trial) -> None:
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        group = (trial.last_result or {}).get(PLACEMENT_GROUP_KEY)
        if not group:
            return
        try:
            remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(group))))
        except Exception:  # noqa: BLE001 - already removed by Ray Train: nothing to free
            pass

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._release(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._release(trial)


def sweep_callbacks(spec: SweepSpec, opts: SweepOptions, concurrency: int, per_trial: dict[str, float],
                    echo: Callable[[str], None]) -> list[tune.Callback]:
    callbacks: list[tune.Callback] = [Progress(spec, echo, exp_dir=experiment_dir(opts.name, opts.storage),
                                               concurrency=concurrency, scheduler=opts.scheduler)]
    if opts.data_parallel:
        callbacks.append(ReleaseTrainPlacementGroup())
    if opts.address:
        callbacks.append(NodeWatch(per_trial, opts.node_timeout_s, echo))
    return callbacks


# --- the Tuner ---------------------------------------------------------------------------------


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def trial_name(trial) -> str:
    """Tune's name with the trial's place in the sweep (its tag starts with it), which seeds the
    trial (``trainable.trial_key``): the same ``--seed`` trains the same configs alike."""
    return f"{trial.trainable_name}_{trial.trial_id}_{trial.experiment_tag.split('_', 1)[0]}"


def tuner(trainable, *, name: str, storage: str, tune_config: dict[str, Any], restore: str | None = None,
          param_space: dict[str, Any] | None = None, checkpoint: tune.CheckpointConfig | None = None,
          max_failures: int = 0, callbacks: list[tune.Callback] = ()) -> tune.Tuner:
    """The one place a Tuner is made: trials in ``trial_<id>`` folders under ``<storage>/<name>``,
    Ray's own output off (our callbacks print); or (``restore``, an experiment folder) Tune's
    saved experiment continued, unfinished trials from their last checkpoint."""
    if restore is not None:
        path, fs = ray_storage(restore)
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False, storage_filesystem=fs)
    storage_path, storage_fs = ray_storage(storage)
    return tune.Tuner(
        trainable,
        param_space=param_space or {},
        tune_config=tune.TuneConfig(trial_dirname_creator=trial_dirname, trial_name_creator=trial_name, **tune_config),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, storage_filesystem=storage_fs,
                                  checkpoint_config=checkpoint, failure_config=tune.FailureConfig(max_failures=max_failures),
                                  callbacks=list(callbacks), verbose=0),
    )


def sweep_tuner(spec: SweepSpec, opts: SweepOptions, data: Any, concurrency: int, per_trial: dict[str, float],
                echo: Callable[[str], None], restore: str | None = None) -> tune.Tuner:
    """The sweep's Tuner: the space's parameters, the searcher and scheduler, a checkpoint kept per
    trial (its best by the metric, and the latest)."""
    return tuner(
        make_trainable(spec, opts, data, per_trial), name=opts.name, storage=opts.resolved_storage(), restore=restore,
        param_space=spec.param_space(),
        tune_config=dict(search_alg=make_searcher(spec, opts, concurrency, echo), scheduler=make_scheduler(spec, opts),
                         num_samples=spec.num_samples, max_concurrent_trials=concurrency,
                         time_budget_s=spec.time_budget_s,
                         # Plain trials reuse their actors (under 1 s to start). A TorchTrainer trial must
                         # not: its Train controller frees the workers' placement group only when it goes.
                         reuse_actors=not opts.data_parallel),
        checkpoint=tune.CheckpointConfig(num_to_keep=1,  # Ray also keeps the latest: resume and "best" both work
                                         checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode),
        max_failures=opts.max_failures, callbacks=sweep_callbacks(spec, opts, concurrency, per_trial, echo),
    )


@dataclass
class Fitted:
    """What a fitted Tuner leaves besides its results: how long it took and why it stopped."""

    grid: Any  # Tune's ResultGrid
    wall_s: float
    interrupted: bool = False  # Ctrl-C, SIGTERM, or the nodes never came (``no_nodes``)
    no_nodes: str | None = None  # NodeWatch's verdict, when it ended the sweep
    stopped: set[str] = field(default_factory=set)  # trials ASHA stopped
    optuna_states: list[dict[str, Any]] = field(default_factory=list)  # what Optuna was told per trial
    rejected: int = 0  # configurations over max_params, never trained


def fit(tuner: tune.Tuner) -> Fitted:
    t0 = time.time()
    # Tune keeps the searcher, scheduler and callbacks on its private _local_tuner (ray<2.61, pyproject)
    local = tuner._local_tuner
    config, run_config = getattr(local, "_tune_config", None), getattr(local, "_run_config", None)
    try:
        with GracefulInterrupt() as guard:
            grid = tuner.fit()
    finally:  # a live table lets go of the terminal however the sweep ended
        for cb in getattr(run_config, "callbacks", None) or []:
            if isinstance(cb, Progress):
                cb.close()
    wall = time.time() - t0
    searcher, scheduler = getattr(config, "search_alg", None), getattr(config, "scheduler", None)
    no_nodes = next((cb.state.timed_out for cb in (getattr(run_config, "callbacks", None) or [])
                     if isinstance(cb, NodeWatch) and cb.state.timed_out), None)
    return Fitted(grid, wall, interrupted=guard.interrupted or bool(no_nodes), no_nodes=no_nodes,
                  stopped=set(getattr(scheduler, "stopped", set())),
                  optuna_states=searcher.trial_states() if hasattr(searcher, "trial_states") else [],
                  rejected=searcher.rejected() if hasattr(searcher, "rejected") else 0)


class GracefulInterrupt:
    """Ctrl-C or SIGTERM ends the sweep gracefully, and we know it happened.

    Tune's own SIGINT handler stops the run but leaves no trace of why; here SIGINT and SIGTERM
    set ``interrupted`` and forward SIGUSR1, which Tune treats as the same graceful stop (it
    saves the experiment state, so ``dlb-tune resume`` continues every unfinished trial).
    A second Ctrl-C aborts at once.
    """

    def __enter__(self):
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
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.saved:
            if self.env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self.env
        return False

