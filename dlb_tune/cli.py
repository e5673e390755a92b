"""The ``dlb-tune`` command line.

Each command imports what it needs when it runs, to keep start-up fast: ``dlb-tune --help`` and
a mistyped option should not wait for torch.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
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
    from dlb_tune.space import SpaceError
    from dlb_tune.sweep import ResourceError
    from dlb_tune.tasks import DataError, UnknownTask

    return (SpaceError, DataError, UnknownTask, ResourceError)


def _run_guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except user_errors() as e:
        _fail(str(e.args[0]) if e.args else str(e))
    except KeyboardInterrupt:
        _fail("interrupted; finished trials are kept (see `dlb-tune resume`)", 130)


DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Data folder (default: $DLB_TUNE_DATA).")]
Storage = Annotated[Optional[str], typer.Option(help="Results folder or URI (default: $DLB_TUNE_RESULTS or ./dlb-tune-runs).")]
SpaceFile = Annotated[Optional[str], typer.Option(help="Search-space YAML (default: search_spaces/TASK.yaml).")]
FixedParams = Annotated[Optional[list[str]], typer.Option("--set", help="Fix a parameter: key=value (repeatable).")]
NumSamples = Annotated[Optional[int], typer.Option(min=1, help="Trials (default: the space file's).")]
MaxEpochs = Annotated[Optional[int], typer.Option(min=1, help="Epochs per trial (default: the space file's).")]
TimeBudget = Annotated[Optional[float], typer.Option(help="Wall-clock budget in seconds.")]
Gpus = Annotated[Optional[float], typer.Option(help="GPUs the sweep may use (default: all detected).")]


@app.command()
def tasks() -> None:
    """List tasks with their search-space files, metric and target."""
    from dlb_tune.space import default_space_file, load_space
    from dlb_tune.tasks import all_tasks

    for name, task in all_tasks().items():
        try:
            path = default_space_file(name)
            spec = load_space(path)
            target = "" if spec.target is None else f", target {spec.target} on test"
            typer.echo(f"{name:8} {spec.metric} ({spec.mode}{target})  {path}")
            typer.echo(f"{'':8} searches: {', '.join(spec.searched()) or 'nothing'}")
        except Exception as e:  # noqa: BLE001 - a broken file should not hide the other tasks
            typer.echo(f"{name:8} space file unusable: {e}")


@app.command()
def sweep(
    task: Annotated[str, typer.Argument(help="Task name (see `dlb-tune tasks`).")],
    data_dir: DataDir = None,
    space: SpaceFile = None,
    set_: FixedParams = None,
    objective: Annotated[Optional[str], typer.Option(help="A named multi-objective mode of the space file.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Experiment name (default: TASK-timestamp).")] = None,
    storage: Storage = None,
    num_samples: NumSamples = None,
    max_epochs: MaxEpochs = None,
    time_budget: TimeBudget = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the sweep may use (default: all).")] = None,
    gpus: Gpus = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial (fractions share a core).")] = 1.0,
    gpus_per_trial: Annotated[Optional[float], typer.Option(help="GPUs per trial (default: 1 when --gpus > 0).")] = None,
    workers_per_trial: Annotated[int, typer.Option(min=1, help="Ray Train data-parallel workers per trial.")] = 1,
    ray_train: Annotated[bool, typer.Option(help="Run trials under Ray Train even with one worker.")] = False,
    seed: Annotated[int, typer.Option(help="Seeds the searcher and every trial.")] = 0,
    search: Annotated[Search, typer.Option(help="Search algorithm.")] = Search.optuna,
    scheduler: Annotated[Scheduler, typer.Option(help="Trial scheduler (asha stops poor trials early).")] = Scheduler.asha,
    address: Annotated[Optional[str], typer.Option(help="Join a running Ray cluster (auto, ray://host:10001).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most N examples per split (quick runs).")] = None,
    smoke: Annotated[bool, typer.Option(help="Tiny model, 2 samples, 2 epochs, small data: checks the setup.")] = False,
    max_failures: Annotated[int, typer.Option(min=0, help="Retries of a failing trial.")] = 0,
    seeds: Annotated[int, typer.Option(min=0, help="At the end, re-train the top 3 configs with K seeds and rank them.")] = 0,
    enqueue: Annotated[Optional[str], typer.Option(help="A `dlb-tune best` file: run its config first (after the space's initial: points).")] = None,
) -> None:
    """Run a sweep: Optuna search with ASHA early stopping, then one test evaluation of the best trial."""
    from dlb_tune.seeds import sweep_with_seeds
    from dlb_tune.sweep import SweepOptions

    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if (gpus or 0) > 0 else 0.0
    opts = SweepOptions(
        task=task, data_dir=data_dir, space=space, overrides=list(set_ or []), objective=objective,
        name=name, storage=storage, num_samples=num_samples, max_epochs=max_epochs,
        time_budget_s=time_budget, cpus=cpus, gpus=gpus, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, workers_per_trial=workers_per_trial, ray_train=ray_train, seed=seed,
        search=search.value, scheduler=scheduler.value, address=address, limit=limit, smoke=smoke,
        max_failures=max_failures, seeds=seeds, enqueue=enqueue,
    )
    final = _run_guarded(sweep_with_seeds, opts, echo=typer.echo)
    if final.get("interrupted"):
        raise typer.Exit(130)


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    storage: Storage = None,
    data_dir: DataDir = None,
) -> None:
    """Continue an interrupted sweep; finished trials are never re-run."""
    from dlb_tune.sweep import resume_sweep

    _run_guarded(resume_sweep, name, storage, data_dir, echo=typer.echo)


@app.command()
def results(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    storage: Storage = None,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Show a finished sweep's trials and its final test result, from disk."""
    from dlb_tune.experiment import experiment_dir, read_results
    from dlb_tune.results import summary_lines

    exp_dir = experiment_dir(name, storage)
    try:
        df, final = read_results(exp_dir)
    except (FileNotFoundError, OSError):
        _fail(f"no results for '{name}' in {exp_dir} (is --storage right?)")
    if format is Format.parquet:
        if output is None:
            _fail("--format parquet needs --output FILE")
        df.to_parquet(output, index=False)
        typer.echo(f"wrote {output}")
        return
    text = {
        Format.csv: lambda: df.to_csv(index=False),
        Format.json: lambda: df.to_json(orient="records", indent=2),
        Format.table: lambda: _table(df, final),
    }[format]()
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)
        if format is Format.table and final:
            for line in summary_lines(final, df):
                typer.echo(line)


def _table(df, final) -> str:
    metric = final["metric"] if final else None
    keep = ["trial_id", "status", "epochs"]
    if metric:
        keep += [c for c in (f"best_{metric}", metric) if c in df]
    keep += [c for c in df.columns if c.startswith("config/")]
    shown = df[[c for c in keep if c in df]].rename(columns=lambda c: c.removeprefix("config/"))
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")


# --- after a sweep: TensorBoard, report, best, compare; before one: plan ------------------------


class CompareFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _guard_reading(fn, *args, **kwargs):
    """``_run_guarded`` plus the errors of reading an experiment folder back."""
    from dlb_tune.board import BoardError
    from dlb_tune.experiment import ReportError

    try:
        return _run_guarded(fn, *args, **kwargs)
    except (ReportError, BoardError) as e:
        _fail(str(e))


@app.command()
def tensorboard(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 6006,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
) -> None:
    """Start TensorBoard over an experiment: per-epoch scalars, HParams, the task's images."""
    from dlb_tune import board
    from dlb_tune.experiment import load_experiment

    exp = _guard_reading(load_experiment, name, storage)
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
    """Write report.md and its figures into the experiment folder."""
    from dlb_tune.experiment import load_experiment
    from dlb_tune.report import _headline, write_report

    exp = _guard_reading(load_experiment, name, storage)
    path, figures = _guard_reading(write_report, exp)
    for line in _headline(exp):
        typer.echo(line.replace("**", ""))
    typer.echo(f"wrote {path} with {len(figures)} figure(s):")
    for fig in figures:
        typer.echo(f"  {fig.relative_to(exp.path)}")


@app.command()
def best(
    name: Annotated[str, typer.Argument(help="Experiment name (or its folder).")],
    storage: Storage = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the YAML here too.")] = None,
    seeds: Annotated[int, typer.Option(min=0, help="Re-run the top configs with this many seeds; rank by mean.")] = 0,
    top: Annotated[int, typer.Option(min=1, help="Configs to re-run with --seeds.")] = 3,
    data_dir: DataDir = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the --seeds runs may use (default: the sweep's).")] = None,
) -> None:
    """Print the best config as a space file with every parameter fixed (feed it to --space).

    With --seeds K, the top configs are trained again with K seeds each (progress and ranking on
    stderr) and the printed config is the one with the best mean.
    """
    from dlb_tune.experiment import load_experiment
    from dlb_tune.report import best_yaml

    exp = _guard_reading(load_experiment, name, storage)
    text = _guard_reading(best_yaml, exp)
    if seeds:
        from dlb_tune.seeds import rerun_seeds, ranking_lines, seed_yaml

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
    """Sweeps side by side: best metric, test result, trials, wall time, time to reach the target.

    Time to target: the first second after the sweep started at which any trial's validation
    value of the sweep metric reached the space file's target.
    """
    from dlb_tune.experiment import load_experiment
    from dlb_tune.report import compare as compare_sweeps

    exps = [_guard_reading(load_experiment, n, storage) for n in names]
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
    gpus_per_trial: Annotated[float, typer.Option(help="GPUs per trial.")] = 0.0,
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

    opts = SweepOptions(task=task, data_dir=data_dir, space=space, overrides=list(set_ or []), name=name,
                        storage=storage, num_samples=num_samples, max_epochs=max_epochs, time_budget_s=time_budget,
                        cpus=cpus, gpus=gpus, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                        scheduler=scheduler.value, limit=limit, smoke=smoke)
    _guard_reading(plan_sweep, opts, vary=vary, max_corners=corners, calibration_batches=calibration_batches,
                   echo=typer.echo)


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    app(prog_name="dlb-tune")


if __name__ == "__main__":
    main()
