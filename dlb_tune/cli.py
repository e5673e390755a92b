"""The ``dlb-tune`` command line."""

from __future__ import annotations

import os
import sys
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
    space: Annotated[Optional[str], typer.Option(help="Search-space YAML (default: search_spaces/TASK.yaml).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Fix a parameter: key=value (repeatable).")] = None,
    objective: Annotated[Optional[str], typer.Option(help="A named multi-objective mode of the space file.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Experiment name (default: TASK-timestamp).")] = None,
    storage: Storage = None,
    num_samples: Annotated[Optional[int], typer.Option(min=1, help="Trials (default: the space file's).")] = None,
    max_epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per trial (default: the space file's).")] = None,
    time_budget: Annotated[Optional[float], typer.Option(help="Wall-clock budget in seconds.")] = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the sweep may use (default: all).")] = None,
    gpus: Annotated[Optional[float], typer.Option(help="GPUs the sweep may use (default: all detected).")] = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial (fractions share a core).")] = 1.0,
    gpus_per_trial: Annotated[Optional[float], typer.Option(help="GPUs per trial (default: 1 when --gpus > 0).")] = None,
    workers_per_trial: Annotated[int, typer.Option(min=1, help="Ray Train data-parallel workers per trial.")] = 1,
    seed: Annotated[int, typer.Option(help="Seeds the searcher and every trial.")] = 0,
    search: Annotated[Search, typer.Option(help="Search algorithm.")] = Search.optuna,
    scheduler: Annotated[Scheduler, typer.Option(help="Trial scheduler (asha stops poor trials early).")] = Scheduler.asha,
    address: Annotated[Optional[str], typer.Option(help="Join a running Ray cluster (auto, ray://host:10001).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most N examples per split (quick runs).")] = None,
    smoke: Annotated[bool, typer.Option(help="Tiny model, 2 samples, 2 epochs, small data: checks the setup.")] = False,
    max_failures: Annotated[int, typer.Option(min=0, help="Retries of a failing trial.")] = 0,
) -> None:
    """Run a sweep: Optuna search with ASHA early stopping, then one test evaluation of the best trial."""
    from dlb_tune.sweep import SweepOptions, run_sweep

    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if (gpus or 0) > 0 else 0.0
    opts = SweepOptions(
        task=task, data_dir=data_dir, space=space, overrides=list(set_ or []), objective=objective,
        name=name, storage=storage, num_samples=num_samples, max_epochs=max_epochs,
        time_budget_s=time_budget, cpus=cpus, gpus=gpus, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, workers_per_trial=workers_per_trial, seed=seed,
        search=search.value, scheduler=scheduler.value, address=address, limit=limit, smoke=smoke,
        max_failures=max_failures,
    )
    final = _run_guarded(run_sweep, opts, echo=typer.echo)
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
    from dlb_tune.results import read_results, summary_lines
    from dlb_tune.sweep import SweepOptions, experiment_dir

    exp_dir = experiment_dir(SweepOptions(task="?", name=name, storage=storage))
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


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    app(prog_name="dlb-tune")


if __name__ == "__main__":
    main()
