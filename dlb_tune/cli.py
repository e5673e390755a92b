"""The ``dlb-tune`` command line.

Each command imports what it needs when it runs, to keep start-up fast: ``dlb-tune --help`` and
a mistyped option should not wait for torch.
"""

from __future__ import annotations

import copy
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlb_tune.cluster import NODE_TIMEOUT_S

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ray Tune + Optuna hyperparameter sweeps for classic deep-learning course models.")


class Search(str, Enum):
    optuna = "optuna"
    random = "random"


class Scheduler(str, Enum):
    asha = "asha"
    fifo = "fifo"


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors():
    """The errors that mean bad input: shown as one line, exit code 2, no traceback."""
    from dlb_tune.experiment import ExperimentError, ReportError
    from dlb_tune.space import SpaceError
    from dlb_tune.storage import StorageError
    from dlb_tune.sweep import ResourceError
    from dlb_tune.tasks import DataError, TaskModuleError, UnknownTask

    return (SpaceError, DataError, UnknownTask, ResourceError, TaskModuleError, StorageError, ExperimentError,
            ReportError)


def _run_guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except user_errors() as e:
        _fail(str(e.args[0]) if e.args else str(e))
    except KeyboardInterrupt:
        _fail("interrupted; finished trials are kept (see `dlb-tune resume`)", 130)


def _print_versions(value: bool) -> None:
    if value:
        from dlb_tune.versions import version_lines

        typer.echo("\n".join(version_lines()))
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and Ray's own log lines on the terminal.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_versions, is_eager=True,
                                          help="Print the versions of dlb-tune and its key dependencies.")] = False,
) -> None:
    from dlb_tune.logs import set_debug

    set_debug(debug)


DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Data folder (default: $DLB_TUNE_DATA, else ~/.cache/dlb-tune/data).")]
Storage = Annotated[Optional[str], typer.Option(help="Results folder or URI (default: $DLB_TUNE_RESULTS or ./dlb-tune-runs).")]
SpaceFile = Annotated[Optional[str], typer.Option(help="Search-space YAML (default: search_spaces/TASK.yaml).")]
FixedParams = Annotated[Optional[list[str]], typer.Option("--set", help="Fix a parameter: key=value (repeatable).")]
NumSamples = Annotated[Optional[int], typer.Option(min=1, help="Trials (default: the space file's).")]
MaxEpochs = Annotated[Optional[int], typer.Option(min=1, help="Epochs per trial (default: the space file's).")]
TimeBudget = Annotated[Optional[float], typer.Option(help="Wall-clock budget in seconds.")]
TaskModule = Annotated[Optional[str], typer.Option(
    help="A task of your own: a .py file or a dotted module name (see `dlb-tune new-task`).")]
Gpus = Annotated[Optional[float], typer.Option(help="GPUs the sweep may use (default: all detected).")]

# `sweep --help` groups its options into these panels (plan shares the run-level ones)
SPACE_PANEL, BUDGET_PANEL, RESOURCES_PANEL, CLUSTER_PANEL, OUTPUT_PANEL = (
    "Search space", "Budget", "Resources", "Cluster", "Output")


def _panel(option: Any, panel: str) -> Any:
    """The shared ``Annotated`` option type ``option``, shown under ``panel`` in a command's help."""
    info = copy.copy(option.__metadata__[0])
    info.rich_help_panel = panel
    return Annotated[option.__args__[0], info]


def gpus_per_trial_default(gpus: float | None, gpus_per_trial: float | None) -> float:
    """One rule for sweep and plan: a trial takes a whole GPU when the sweep is given GPUs."""
    if gpus_per_trial is not None:
        return gpus_per_trial
    return 1.0 if (gpus or 0) > 0 else 0.0


def check_seeds(seeds: int) -> None:
    """--seeds 1 would re-run each config once: no spread to rank by."""
    if seeds == 1:
        _fail("--seeds 1 measures no spread; use --seeds 2 or more (0: no re-runs)")


@app.command()
def tasks(task_module: TaskModule = None) -> None:
    """List tasks with their search-space files, metric and target."""
    from dlb_tune.space import default_space_file, load_space
    from dlb_tune.tasks import all_tasks, load_task_module

    if task_module:
        _run_guarded(load_task_module, task_module)
    for name, task in _run_guarded(all_tasks).items():
        try:
            path = default_space_file(name)
            spec = load_space(path)
            target = "" if spec.target is None else f", target {spec.target} on test"
            typer.echo(f"{name:8} {spec.metric} ({spec.mode}{target})  {path}")
            typer.echo(f"{'':8} searches: {', '.join(spec.searched()) or 'nothing'}")
        except Exception as e:  # noqa: BLE001 - a broken file should not hide the other tasks
            typer.echo(f"{name:8} space file unusable: {e}")


SWEEP_EXAMPLES = """Examples:

  dlb-tune sweep fcn --data-dir ~/data
    the default FCN sweep: Optuna + ASHA, the space file's trials and budget

  dlb-tune sweep emotion --set cell=gru --num-samples 20 --time-budget 900
    GRU cells only, 20 trials, at most 15 minutes

  dlb-tune sweep cnn --address auto --storage s3://bucket/runs \\
      --gpus 4 --gpus-per-trial 0.5
    on a running Ray cluster: two trials per GPU, results on shared storage"""

SweepStorage = _panel(Storage, OUTPUT_PANEL)


@app.command(epilog=SWEEP_EXAMPLES)
def sweep(
    task: Annotated[str, typer.Argument(help="Task name (see `dlb-tune tasks`).")],
    task_module: TaskModule = None,
    data_dir: DataDir = None,
    space: _panel(SpaceFile, SPACE_PANEL) = None,
    set_: _panel(FixedParams, SPACE_PANEL) = None,
    objective: Annotated[Optional[str], typer.Option(help="A named multi-objective mode of the space file.",
                                                     rich_help_panel=SPACE_PANEL)] = None,
    search: Annotated[Search, typer.Option(help="Search algorithm.", rich_help_panel=SPACE_PANEL)] = Search.optuna,
    scheduler: Annotated[Scheduler, typer.Option(help="Trial scheduler (asha stops poor trials early).",
                                                 rich_help_panel=SPACE_PANEL)] = Scheduler.asha,
    seed: Annotated[int, typer.Option(help="Seeds the searcher and every trial.", rich_help_panel=SPACE_PANEL)] = 0,
    enqueue: Annotated[Optional[str], typer.Option(help="A `dlb-tune best` file: run its config first (before the space's initial: points).",
                                                   rich_help_panel=SPACE_PANEL)] = None,
    num_samples: _panel(NumSamples, BUDGET_PANEL) = None,
    max_epochs: _panel(MaxEpochs, BUDGET_PANEL) = None,
    time_budget: _panel(TimeBudget, BUDGET_PANEL) = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most N examples per split (quick runs).",
                                                 rich_help_panel=BUDGET_PANEL)] = None,
    smoke: Annotated[bool, typer.Option(help="Tiny model, 2 samples, 2 epochs, small data: checks the setup.",
                                        rich_help_panel=BUDGET_PANEL)] = False,
    seeds: Annotated[int, typer.Option(min=0, help="At the end, re-train the top 3 configs with K >= 2 seeds and rank them.",
                                       rich_help_panel=BUDGET_PANEL)] = 0,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the sweep may use (default: all).",
                                                  rich_help_panel=RESOURCES_PANEL)] = None,
    gpus: _panel(Gpus, RESOURCES_PANEL) = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial (fractions share a core).",
                                                  rich_help_panel=RESOURCES_PANEL)] = 1.0,
    gpus_per_trial: Annotated[Optional[float], typer.Option(help="GPUs per trial (default: 1 when --gpus > 0).",
                                                            rich_help_panel=RESOURCES_PANEL)] = None,
    workers_per_trial: Annotated[int, typer.Option(min=1, help="Ray Train data-parallel workers per trial.",
                                                   rich_help_panel=RESOURCES_PANEL)] = 1,
    ray_train: Annotated[bool, typer.Option(help="Run trials under Ray Train even with one worker.",
                                            rich_help_panel=RESOURCES_PANEL)] = False,
    max_failures: Annotated[int, typer.Option(min=0, help="Retries of a failing trial.", rich_help_panel=RESOURCES_PANEL)] = 0,
    address: Annotated[Optional[str], typer.Option(help="Join a running Ray cluster (auto, ray://host:10001).",
                                                   rich_help_panel=CLUSTER_PANEL)] = None,
    node_timeout: Annotated[float, typer.Option(min=1, help="With --address: stop (resumable) when trials wait this many seconds and no node joins.",
                                                rich_help_panel=CLUSTER_PANEL)] = NODE_TIMEOUT_S,
    name: Annotated[Optional[str], typer.Option(help="Experiment name (default: TASK-timestamp).",
                                                rich_help_panel=OUTPUT_PANEL)] = None,
    storage: SweepStorage = None,
) -> None:
    """Run a sweep: Optuna search with ASHA early stopping, then one test evaluation of the best trial."""
    from dlb_tune.seeds import sweep_with_seeds
    from dlb_tune.sweep import SweepOptions

    check_seeds(seeds)
    opts = SweepOptions(
        task=task, task_module=task_module, data_dir=data_dir, space=space, overrides=list(set_ or []), objective=objective,
        name=name, storage=storage, num_samples=num_samples, max_epochs=max_epochs,
        time_budget_s=time_budget, cpus=cpus, gpus=gpus, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial_default(gpus, gpus_per_trial), workers_per_trial=workers_per_trial,
        ray_train=ray_train, seed=seed, search=search.value, scheduler=scheduler.value, address=address,
        node_timeout_s=node_timeout, limit=limit,
        smoke=smoke, max_failures=max_failures, seeds=seeds, enqueue=enqueue,
    )
    final = _run_guarded(sweep_with_seeds, opts, echo=typer.echo)
    if final.get("interrupted"):
        raise typer.Exit(130)


RecordedTaskModule = Annotated[Optional[str], typer.Option(
    help="The sweep's own task module (.py file or dotted name): sweep.json names it, but only a module given "
         "here is imported.")]


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
    data_dir: DataDir = None,
    task_module: RecordedTaskModule = None,
) -> None:
    """Continue an interrupted sweep; finished trials are never re-run. Ray restores the sweep's
    pickled state (tuner.pkl, the searcher's): resume only folders you trust."""
    from dlb_tune.sweep import resume_sweep

    name, storage = _name_and_storage(name, storage)
    _run_guarded(resume_sweep, name, storage, data_dir, echo=typer.echo, task_module=task_module)


def _name_and_storage(name: str, storage: str | None) -> tuple[str, str | None]:
    """NAME given as an experiment's folder: its name and the storage folder holding it."""
    from dlb_tune.experiment import SPACE_FILE

    folder = Path(name).expanduser()
    if (folder / SPACE_FILE).is_file():
        folder = folder.resolve()
        return folder.name, str(folder.parent)
    return name, storage


TABLE_WIDTH = 100  # columns: `results` wraps its table to fit a terminal this wide


@app.command()
def results(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Table: every column, not only the searched parameters.")] = False,
) -> None:
    """Show a finished sweep's trials and its final test result, from disk."""
    from dlb_tune.experiment import experiment_dir, find_experiment, is_uri, read_results, read_space, resolve_storage
    from dlb_tune.results import summary_lines
    from dlb_tune.storage import check_storage

    root = _run_guarded(resolve_storage, storage)
    _run_guarded(check_storage, root)
    # a stored sweep is read where it lies; a local one may also be named by its folder
    exp_dir = experiment_dir(name, storage) if is_uri(root) else _guard_reading(find_experiment, name, storage)
    try:
        df, final = _guard_reading(read_results, str(exp_dir))
    except OSError:  # FileNotFoundError, or a store that cannot say more
        _fail(f"no results for '{name}' in {exp_dir} (the sweep has not finished?)")
    if format is Format.parquet:
        if output is None:
            _fail("--format parquet needs --output FILE")
        df.to_parquet(output, index=False)
        typer.echo(f"wrote {output}")
        return
    text = {
        Format.csv: lambda: df.to_csv(index=False),
        Format.json: lambda: df.to_json(orient="records", indent=2),
        Format.table: lambda: df.to_string(index=False) if all_ else _table(df, _guard_reading(read_space, exp_dir)),
    }[format]()
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)
        if format is Format.table and final:
            for line in summary_lines(final, df):
                typer.echo(_fit(line))


def _table(df, spec) -> str:
    """Trial, status, epochs, the metric and the searched parameters, wrapped to ``TABLE_WIDTH``."""
    keep = ["trial_id", "status", "epochs", f"best_{spec.metric}", spec.metric]
    keep += [f"config/{p}" for p in spec.searched()]
    shown = df[[c for c in keep if c in df]].rename(columns=lambda c: c.removeprefix("config/"))
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", line_width=TABLE_WIDTH)


def _fit(line: str) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(line, TABLE_WIDTH, subsequent_indent="    ")) if len(line) > TABLE_WIDTH else line


@app.command(name="ls")
def list_sweeps(storage: Storage = None) -> None:
    """List the experiments under --storage: task, state, trials, best (validation), test result, start date."""
    from dlb_tune.listing import list_experiments, table_lines

    try:
        rows = _run_guarded(list_experiments, storage)
    except FileNotFoundError as e:
        _fail(str(e))
    if not rows:
        from dlb_tune.experiment import resolve_storage

        typer.echo(f"no experiments in {resolve_storage(storage)}")
        return
    for line in table_lines(rows):
        typer.echo(line)


# --- after a sweep: TensorBoard, report, best, compare; before one: plan ------------------------


class CompareFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _guard_reading(fn, *args, **kwargs):
    """``_run_guarded`` plus TensorBoard's errors."""
    from dlb_tune.board import BoardError

    try:
        return _run_guarded(fn, *args, **kwargs)
    except BoardError as e:
        _fail(str(e))


def _load(name: str, storage: Optional[str]):
    """The experiment, read back; a stored one is read from its local copy, and we say where."""
    from dlb_tune.experiment import cached_from, experiment_dir, load_experiment
    from dlb_tune.storage import shown

    exp = _guard_reading(load_experiment, name, storage)
    if cached_from(exp.path):
        typer.echo(f"read {shown(experiment_dir(exp.name, storage))} from its local copy {exp.path}", err=True)
    return exp


@app.command()
def tensorboard(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 6006,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
) -> None:
    """Start TensorBoard over an experiment: per-epoch scalars, HParams, the task's images."""
    from dlb_tune import board

    if not _loopback(host):
        typer.echo(f"warning: TensorBoard has no authentication: on --host {host} anyone who can reach this "
                   f"machine reads the experiment (127.0.0.1 and an SSH tunnel keep it private)", err=True)
    exp = _load(name, storage)
    written = _guard_reading(board.write_board, exp.path)
    if port and not _port_free(host, port):
        typer.echo(f"port {port} is taken; using a free one", err=True)
        port = 0
    proc, url = _guard_reading(board.start_tensorboard, exp.path, port or None, host)
    images = sum(len(v) for v in written["images"].values())
    if exp.in_progress:  # trials that start later show up too: TensorBoard rescans the folder
        typer.echo(exp.progress_line())
    typer.echo(f"TensorBoard on {url}  ({len(exp.trials)} trials; HParams: {len(written['hparams'])} "
               f"parameters, {len(written['metrics'])} metrics; {images} image(s))  Ctrl-C stops it")
    import signal

    # Ctrl-C, or a plain `kill` (SIGINT is ignored in background jobs): TensorBoard goes too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        proc.wait()
    except KeyboardInterrupt:
        board.stop(proc)


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return host == "localhost"


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until the sweep ends.")] = False,
    every: Annotated[float, typer.Option(min=1.0, help="Seconds between refreshes with --watch.")] = 10.0,
) -> None:
    """Where a sweep stands, running or finished: trials by state, best so far, time left."""
    import sys

    from dlb_tune.status import watch as watch_sweep

    try:
        _guard_reading(watch_sweep, name, storage, every if watch else None, typer.echo, tty=sys.stdout.isatty())
    except KeyboardInterrupt:
        raise typer.Exit(0)


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
) -> None:
    """Write report.md and its figures into the experiment folder (a stored one: its local copy,
    then uploaded to the store)."""
    from dlb_tune.experiment import cached_from, experiment_dir, is_uri
    from dlb_tune.report import _headline, upload_report, write_report
    from dlb_tune.storage import shown

    exp = _load(name, storage)
    path, figures = _guard_reading(write_report, exp)
    for line in _headline(exp):
        typer.echo(line.replace("**", ""))
    typer.echo(f"wrote {path} with {len(figures)} figure(s):")
    for fig in figures:
        typer.echo(f"  {fig.relative_to(exp.path)}")
    if cached_from(exp.path):
        stored = name if is_uri(name) else experiment_dir(name, storage)
        sent = _guard_reading(upload_report, exp, [path, *figures], stored)
        typer.echo(f"uploaded {sent} file(s) (report.md and its figures) to {shown(stored)}")


@app.command()
def best(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the YAML here too.")] = None,
    seeds: Annotated[int, typer.Option(min=0, help="Re-run the top configs with this many seeds (2 or more); rank by mean.")] = 0,
    top: Annotated[int, typer.Option(min=1, help="Configs to re-run with --seeds.")] = 3,
    data_dir: DataDir = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the --seeds runs may use (default: the sweep's).")] = None,
    task_module: RecordedTaskModule = None,
) -> None:
    """Print the best config as a space file with every parameter fixed (feed it to --space).

    With --seeds K, the top configs are trained again with K seeds each (progress and ranking on
    stderr) and the printed config is the one with the best mean; a task of your own needs
    --task-module then.
    """
    from dlb_tune.report import best_yaml

    check_seeds(seeds)
    exp = _load(name, storage)
    text = _guard_reading(best_yaml, exp)
    if seeds:
        from dlb_tune.seeds import rerun_seeds, ranking_lines, seed_yaml
        from dlb_tune.tasks import load_task_module

        if task_module:  # re-training runs the task's code: only a module named here
            _run_guarded(load_task_module, task_module)

        err = lambda line: typer.echo(line, err=True)  # noqa: E731 - stdout stays valid YAML
        result = _guard_reading(rerun_seeds, exp, seeds, top, data_dir=data_dir, cpus=cpus, echo=err)
        for line in ranking_lines(result):
            err(line)
        text = seed_yaml(exp, result)
    typer.echo(text, nl=False)
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


@app.command()
def compare(
    names: Annotated[list[str], typer.Argument(help="Experiment names (or folders).")],
    storage: Storage = None,
    format: Annotated[CompareFormat, typer.Option("--format", help="Output format.")] = CompareFormat.table,
) -> None:
    """Sweeps side by side: best validation metric and when it was reached, trials, wall time; then the test result.

    time_to_best_val_s: the first second after the sweep started at which any trial's validation
    value was as good as the winner's. The target is judged on the test split only.
    """
    from dlb_tune.report import compare as compare_sweeps

    exps = [_load(n, storage) for n in names]
    df = compare_sweeps(exps)
    if format is CompareFormat.csv:
        typer.echo(df.to_csv(index=False), nl=False)
    elif format is CompareFormat.json:
        typer.echo(df.to_json(orient="records", indent=2))
    else:
        shown = df.drop(columns=["test_metric"]).set_index("name").T
        typer.echo(shown.to_string(float_format=lambda v: f"{v:.4g}"))


@app.command()
def plan(
    task: Annotated[str, typer.Argument(help="Task name (see `dlb-tune tasks`).")],
    task_module: TaskModule = None,
    data_dir: DataDir = None,
    space: SpaceFile = None,
    set_: FixedParams = None,
    name: Annotated[Optional[str], typer.Option(help="Save plan.json into this experiment's folder (then sweep with the same name).")] = None,
    storage: Storage = None,
    num_samples: NumSamples = None,
    max_epochs: MaxEpochs = None,
    time_budget: TimeBudget = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the sweep may use (default: all).")] = None,
    gpus: Gpus = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial.")] = 1.0,
    gpus_per_trial: Annotated[Optional[float], typer.Option(help="GPUs per trial (default: 1 when --gpus > 0).")] = None,
    scheduler: Annotated[Scheduler, typer.Option(help="The sweep's scheduler.")] = Scheduler.asha,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most N examples per split, as the sweep will use.")] = None,
    smoke: Annotated[bool, typer.Option(help="Plan the --smoke sweep.")] = False,
    vary: Annotated[Optional[list[str]], typer.Option(help="Parameter whose extremes are timed (repeatable; default: size-like names).")] = None,
    corners: Annotated[int, typer.Option(min=1, help="At most this many corners of the space to time.")] = 4,
    calibration_batches: Annotated[int, typer.Option(min=2, help="Batches timed per loop; the rest is scaled.")] = 20,
) -> None:
    """Estimate a sweep's trial-epochs and wall time before launching it."""
    from dlb_tune.plan import plan_sweep
    from dlb_tune.sweep import SweepOptions

    opts = SweepOptions(task=task, task_module=task_module, data_dir=data_dir, space=space, overrides=list(set_ or []), name=name,
                        storage=storage, num_samples=num_samples, max_epochs=max_epochs, time_budget_s=time_budget,
                        cpus=cpus, gpus=gpus, cpus_per_trial=cpus_per_trial,
                        gpus_per_trial=gpus_per_trial_default(gpus, gpus_per_trial), scheduler=scheduler.value,
                        limit=limit, smoke=smoke)
    _guard_reading(plan_sweep, opts, vary=vary, max_corners=corners, calibration_batches=calibration_batches,
                   echo=typer.echo)


from dlb_tune.data_commands import data_app  # noqa: E402 - the `data` commands live with their concept

app.add_typer(data_app, name="data")
# --- a task of the user's own -----------------------------------------------------------------


@app.command("check-task")
def check_task(
    task: Annotated[str, typer.Argument(help="Task name.")],
    task_module: TaskModule = None,
    data_dir: DataDir = None,
    sweep: Annotated[bool, typer.Option(help="End with a real --smoke sweep (starts Ray).")] = True,
) -> None:
    """Run the contract every task meets: declarations, config round trip, data errors, one epoch,
    checkpoint resume, a smoke sweep. Exit code 1 when a check fails."""
    from dlb_tune.contract import run_checks
    from dlb_tune.sweep import SweepOptions
    from dlb_tune.tasks import get_task, load_task_module

    recorded = _run_guarded(load_task_module, task_module) if task_module else None
    _run_guarded(get_task, task)
    folder = _run_guarded(SweepOptions(task=task, data_dir=data_dir).resolved_data_dir)
    failed = run_checks(task, folder, typer.echo, sweep=sweep, task_module=recorded)
    typer.echo(f"{task}: {'all checks passed' if not failed else f'{failed} check(s) failed'}")
    if failed:
        raise typer.Exit(1)


@app.command("new-task")
def new_task(
    name: Annotated[str, typer.Argument(help="The task's name (a Python identifier).")],
    dir: Annotated[Path, typer.Option("--dir", help="Folder to write NAME.py and NAME.yaml into.")] = Path("."),
    dataset: Annotated[str, typer.Option(help="A torchvision image-classification data set: MNIST, FashionMNIST, "
                                              "KMNIST, CIFAR10, ... read from the data folder.")] = "MNIST",
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Write a working task module and its search-space file, ready for `check-task` and `sweep`."""
    from dlb_tune.new_task import TemplateError, write_task

    try:
        module, space = write_task(name, dir, dataset, force=force)
    except TemplateError as e:
        _fail(str(e))
    typer.echo(f"wrote {module} and {space}")
    typer.echo(f"next: dlb-tune check-task {name} --task-module {module}")


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    try:
        app(prog_name="dlb-tune")
    except Exception as e:  # noqa: BLE001 - what nobody anticipated: one line here, the traceback in a file
        from dlb_tune import logs

        if logs.debug():
            raise
        path = logs.record_crash(e, sys.argv[1:])
        typer.echo(f"error: {logs.one_line(e)} (full traceback in {path})", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
