"""What every ``dlb-tune`` command shares: its option types, what the shell completes (task and
experiment names; Click completes enum values itself), the Examples block of a command's help, and
how a command turns a user's mistake into one ``error:`` line and exit code 2.

Completion runs this module's callbacks on every TAB: they read entry-point metadata and folder
names, never a task module (torch) or an experiment's files.
"""

from __future__ import annotations

import copy
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


class Sampler(str, Enum):
    """Optuna's sampler, one name on the command line and in the space file's ``search: {sampler:}``."""
    tpe = "tpe"
    random = "random"


class Scheduler(str, Enum):
    asha = "asha"
    fifo = "fifo"


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class CompareFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def renamed(new: str):
    """A hidden option's callback: the old flag is refused in one line naming the new one."""
    def refuse(ctx: typer.Context, param, value) -> None:
        if value is not None and not ctx.resilient_parsing:
            fail(f"{param.opts[0]} was renamed: use {new}")
    return refuse


def user_errors():
    """The errors that mean bad input: shown as one line, exit code 2, no traceback."""
    from dlb_tune.distributions import SpaceError
    from dlb_tune.experiment import ExperimentError
    from dlb_tune.options import ResourceError
    from dlb_tune.storage import ReportError, StorageError
    from dlb_tune.tasks import DataError, TaskModuleError, UnknownTask

    return (SpaceError, DataError, UnknownTask, ResourceError, TaskModuleError, StorageError, ExperimentError,
            ReportError)


def run_guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except user_errors() as e:
        fail(str(e.args[0]) if e.args else str(e))
    except KeyboardInterrupt:
        fail("interrupted; finished trials are kept (see `dlb-tune resume`)", 130)


def load(name: str, storage: Optional[str]):
    """The experiment, read back; a stored one is read from its local copy, and we say where."""
    from dlb_tune.experiment import cached_from, experiment_dir, load_experiment
    from dlb_tune.storage import shown

    exp = run_guarded(load_experiment, name, storage)
    if cached_from(exp.path):
        typer.echo(f"read {shown(experiment_dir(exp.name, storage))} from its local copy {exp.path}", err=True)
    return exp


def examples(*pairs: str) -> str:
    """A command's help epilog: ``Examples:`` then each command line and, under it, what it does
    (given as command, what, command, what, ...), as ``sweep --help`` shows them."""
    lines = [f"  {command}\n    {what}" for command, what in zip(pairs[::2], pairs[1::2])]
    return "Examples:\n\n" + "\n\n".join(lines)


def complete_task(incomplete: str) -> list[str]:
    """Task names for the shell: the entry points' names, no task module imported."""
    from dlb_tune.tasks import task_names

    return [name for name in task_names() if name.startswith(incomplete)]


def complete_experiment(ctx: typer.Context, incomplete: str) -> list[str]:
    """Experiment names for the shell: the folders holding a space.yaml under ``--storage`` when
    the command line gives it already, else under the default storage. A URI is not listed (a
    round trip to a bucket on every TAB)."""
    from dlb_tune.experiment import SPACE_FILE
    from dlb_tune.storage import is_uri, resolve_storage

    storage = ctx.params.get("storage")
    try:
        root = resolve_storage(storage)
    except Exception:  # noqa: BLE001 - a TAB never prints an error
        return []
    if is_uri(root) or not Path(root).is_dir():
        return []
    names = sorted(d.name for d in Path(root).iterdir() if (d / SPACE_FILE).is_file())
    return [n for n in names if n.startswith(incomplete) and n not in (ctx.params.get("names") or [])]


DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Data folder (default: $DLB_TUNE_DATA, else ~/.cache/dlb-tune/data).")]
Storage = Annotated[Optional[str], typer.Option(help="Results folder or URI (default: $DLB_TUNE_RESULTS or ./dlb-tune-runs).")]
SpaceFile = Annotated[Optional[str], typer.Option(help="Search-space YAML, or a shipped one's name (cnn_small); default: search_spaces/TASK.yaml.")]
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


def panel(option: Any, panel: str) -> Any:
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
        fail("--seeds 1 measures no spread; use --seeds 2 or more (0: no re-runs)")


RecordedTaskModule = Annotated[Optional[str], typer.Option(
    help="The sweep's own task module (.py file or dotted name): sweep.json names it, but only a module given "
         "here is imported.")]


def name_and_storage(name: str, storage: str | None) -> tuple[str, str | None]:
    """NAME given as an experiment's folder: its name and the storage folder holding it."""
    from dlb_tune.experiment import SPACE_FILE

    folder = Path(name).expanduser()
    if (folder / SPACE_FILE).is_file():
        folder = folder.resolve()
        return folder.name, str(folder.parent)
    return name, storage




TaskName = Annotated[str, typer.Argument(help="Task name (see `dlb-tune tasks`).", autocompletion=complete_task)]
ExperimentName = Annotated[str, typer.Argument(help="Experiment name (or its folder).",
                                               autocompletion=complete_experiment)]
