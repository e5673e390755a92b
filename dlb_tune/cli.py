"""The ``dlb-tune`` command line.

Each command imports what it needs when it runs, to keep start-up fast: ``dlb-tune --help`` and
a mistyped option should not wait for torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlb_tune import cli_reading
from dlb_tune.cli_common import (BUDGET_PANEL, CLUSTER_PANEL, OUTPUT_PANEL, RESOURCES_PANEL, SPACE_PANEL, DataDir,
                                 ExperimentName, FixedParams, Gpus, MaxEpochs, NumSamples, RecordedTaskModule,
                                 Sampler, Scheduler, SpaceFile, Storage, TaskModule, TaskName, TimeBudget, check_seeds,
                                 examples, fail, gpus_per_trial_default, name_and_storage, panel, renamed, run_guarded)
from dlb_tune.cluster import NODE_TIMEOUT_S

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ray Tune + Optuna hyperparameter sweeps for classic deep-learning course models.")


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


@app.command(epilog=examples("dlb-tune tasks", "the package's tasks and any installed ones",
                             "dlb-tune tasks --task-module my_task.py", "with a task of your own"))
def tasks(task_module: TaskModule = None) -> None:
    """List tasks with their search-space files, metric and target."""
    from dlb_tune.space import default_space_file, load_space
    from dlb_tune.space_files import other_spaces
    from dlb_tune.tasks import load_task_module, task_names

    if task_module:
        run_guarded(load_task_module, task_module)
    from dlb_tune.show import table, wrapped

    rows, notes = [], []
    for name in task_names():  # from the entry points and space files: no task module is imported
        try:
            path = default_space_file(name)
            spec = load_space(path, with_task=False)
            rows.append([name, f"{spec.metric} ({spec.mode})", "none" if spec.target is None else spec.target,
                         ", ".join(spec.searched()) or "nothing"])
            notes += wrapped(f"{name}: {path}" + (f": {spec.description}" if spec.description else ""), indent="    ")
            for other in other_spaces(name):  # a second space for the task: cnn_small
                about = load_space(other, with_task=False).description
                notes += wrapped(f"{name}: --space {other.stem}: {other}" + (f": {about}" if about else ""), indent="    ")
        except Exception as e:  # noqa: BLE001 - a broken file should not hide the other tasks
            rows.append([name, "-", "-", "space file unusable"])
            notes += wrapped(f"{name}: space file unusable: {e}", indent="    ")
    header = ["task", "metric", "target (test)", "searches"]
    for line in table(header, rows, whole=header[:3]) + ["", "space files:"] + notes:
        typer.echo(line)


SWEEP_EXAMPLES = """Examples:

  dlb-tune sweep fcn --data-dir ~/data
    the default FCN sweep: the space file's sampler, trials and budget, ASHA

  dlb-tune sweep emotion --set cell=gru --num-samples 20 --time-budget 900
    GRU cells only, 20 trials, at most 15 minutes

  dlb-tune sweep cnn --address auto --storage s3://bucket/runs \\
      --gpus 4 --gpus-per-trial 0.5
    on a running Ray cluster: two trials per GPU, results on shared storage"""

SweepStorage = panel(Storage, OUTPUT_PANEL)


@app.command(epilog=SWEEP_EXAMPLES)
def sweep(
    task: TaskName,
    task_module: TaskModule = None,
    data_dir: DataDir = None,
    space: panel(SpaceFile, SPACE_PANEL) = None,
    set_: panel(FixedParams, SPACE_PANEL) = None,
    objective: Annotated[Optional[str], typer.Option(help="A named multi-objective mode of the space file; none: the metric alone.",
                                                     rich_help_panel=SPACE_PANEL)] = None,
    sampler: Annotated[Optional[Sampler], typer.Option(
        help="Optuna's sampler (default: the space file's search.sampler, else tpe).",
        rich_help_panel=SPACE_PANEL)] = None,
    _search: Annotated[Optional[str], typer.Option("--search", hidden=True, expose_value=True,
                                                   callback=renamed("--sampler tpe|random"))] = None,
    scheduler: Annotated[Scheduler, typer.Option(help="Trial scheduler (asha stops poor trials early).",
                                                 rich_help_panel=SPACE_PANEL)] = Scheduler.asha,
    seed: Annotated[int, typer.Option(help="Seeds the sampler and every trial.", rich_help_panel=SPACE_PANEL)] = 0,
    enqueue: Annotated[Optional[str], typer.Option(help="A `dlb-tune best` file: run its config first (before the space's initial: points).",
                                                   rich_help_panel=SPACE_PANEL)] = None,
    num_samples: panel(NumSamples, BUDGET_PANEL) = None,
    max_epochs: panel(MaxEpochs, BUDGET_PANEL) = None,
    time_budget: panel(TimeBudget, BUDGET_PANEL) = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most N examples per split (quick runs).",
                                                 rich_help_panel=BUDGET_PANEL)] = None,
    # on/off flags without a --no- twin: the help's option column stays readable at 80 columns
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny model, 2 samples, 2 epochs, small data: checks the setup.",
                                        rich_help_panel=BUDGET_PANEL)] = False,
    seeds: Annotated[Optional[int], typer.Option(
        min=0, help="At the end, re-train the top 3 configs with K >= 2 seeds and rank them (a space with "
                    "compare_by: each value's best, 3 seeds unless given; 0: none).",
        rich_help_panel=BUDGET_PANEL)] = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the sweep may use (default: all).",
                                                  rich_help_panel=RESOURCES_PANEL)] = None,
    gpus: panel(Gpus, RESOURCES_PANEL) = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial (fractions share a core).",
                                                  rich_help_panel=RESOURCES_PANEL)] = 1.0,
    gpus_per_trial: Annotated[Optional[float], typer.Option(help="GPUs per trial (default: 1 when --gpus > 0).",
                                                            rich_help_panel=RESOURCES_PANEL)] = None,
    workers_per_trial: Annotated[int, typer.Option(min=1, help="Ray Train data-parallel workers per trial.",
                                                   rich_help_panel=RESOURCES_PANEL)] = 1,
    ray_train: Annotated[bool, typer.Option("--ray-train", help="Run trials under Ray Train even with one worker.",
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
    """Run a sweep: Optuna's sampler with ASHA early stopping, then one test evaluation of the best trial."""
    from dlb_tune.options import SweepOptions
    from dlb_tune.prepare import check_request

    check_seeds(seeds)
    opts = SweepOptions(
        task=task, task_module=task_module, data_dir=data_dir, space=space, overrides=list(set_ or []), objective=objective,
        name=name, storage=storage, num_samples=num_samples, max_epochs=max_epochs,
        time_budget_s=time_budget, cpus=cpus, gpus=gpus, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial_default(gpus, gpus_per_trial), workers_per_trial=workers_per_trial,
        ray_train=ray_train, seed=seed, sampler=sampler.value if sampler else None, scheduler=scheduler.value, address=address,
        node_timeout_s=node_timeout, limit=limit,
        smoke=smoke, max_failures=max_failures, seeds=seeds, enqueue=enqueue,
    )
    run_guarded(check_request, opts)  # before torch and Ray are imported: a mistake fails at once
    from dlb_tune.reruns import after_sweep
    from dlb_tune.sweep import run_sweep

    final = run_guarded(run_sweep, opts, echo=typer.echo, after=after_sweep(opts, echo=typer.echo))
    if final.get("interrupted"):
        raise typer.Exit(130)


@app.command(epilog=examples(
    "dlb-tune resume fcn-20250101-120000", "continue an interrupted sweep under the default storage",
    "dlb-tune resume my-sweep --storage s3://bucket/runs --data-dir ~/data",
    "one kept on object storage, with the data in another folder on this machine"))
def resume(
    name: ExperimentName,
    storage: Storage = None,
    data_dir: DataDir = None,
    task_module: RecordedTaskModule = None,
) -> None:
    """Continue an interrupted sweep; finished trials are never re-run. Ray restores the sweep's
    pickled state (tuner.pkl, the searcher's): resume only folders you trust."""
    from dlb_tune.experiment import experiment_dir, recorded_options
    from dlb_tune.storage import is_uri, resolve_storage

    name, storage = name_and_storage(name, storage)
    if not is_uri(run_guarded(resolve_storage, storage)):  # an unknown sweep, before Ray is imported (a store: by resume)
        run_guarded(recorded_options, experiment_dir(name, storage), name, storage)
    from dlb_tune.sweep import resume_sweep

    run_guarded(resume_sweep, name, storage, data_dir, echo=typer.echo, task_module=task_module)


# The reading commands, in the order `--help` lists them (dlb_tune.cli_reading).
app.command(epilog=examples(*cli_reading.EXAMPLES["results"]))(cli_reading.results)
app.command(name="ls", epilog=examples(*cli_reading.EXAMPLES["ls"]))(cli_reading.list_sweeps)
app.command(epilog=examples(*cli_reading.EXAMPLES["tensorboard"]))(cli_reading.tensorboard)
app.command(epilog=examples(*cli_reading.EXAMPLES["status"]))(cli_reading.status)
app.command(epilog=examples(*cli_reading.EXAMPLES["report"]))(cli_reading.report)
app.command(epilog=examples(*cli_reading.EXAMPLES["best"]))(cli_reading.best)
app.command(epilog=examples(*cli_reading.EXAMPLES["compare"]))(cli_reading.compare)


@app.command(epilog=examples(
    "dlb-tune plan fcn", "trial-epochs and wall time of the default FCN sweep on this machine",
    "dlb-tune plan cnn --num-samples 40 --cpus 8 --name cnn-big",
    "40 trials on 8 CPUs; plan.json saved for `dlb-tune sweep cnn --name cnn-big`"))
def plan(
    task: TaskName,
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
    from dlb_tune.options import SweepOptions
    from dlb_tune.prepare import check_request

    opts = SweepOptions(task=task, task_module=task_module, data_dir=data_dir, space=space, overrides=list(set_ or []), name=name,
                        storage=storage, num_samples=num_samples, max_epochs=max_epochs, time_budget_s=time_budget,
                        cpus=cpus, gpus=gpus, cpus_per_trial=cpus_per_trial,
                        gpus_per_trial=gpus_per_trial_default(gpus, gpus_per_trial), scheduler=scheduler.value,
                        limit=limit, smoke=smoke)
    run_guarded(check_request, opts, machine=False)
    from dlb_tune.plan import plan_sweep

    run_guarded(plan_sweep, opts, vary=vary, max_corners=corners, calibration_batches=calibration_batches,
                   echo=typer.echo)


from dlb_tune.data_commands import data_app  # noqa: E402 - the `data` commands live with their concept

app.add_typer(data_app, name="data")
# --- a task of the user's own -----------------------------------------------------------------


@app.command("check-task", epilog=examples(
    "dlb-tune check-task my_task --task-module my_task.py", "every check, ending with a smoke sweep",
    "dlb-tune check-task fcn --no-sweep", "a built-in task, without starting Ray"))
def check_task(
    task: TaskName,
    task_module: TaskModule = None,
    data_dir: DataDir = None,
    sweep: Annotated[bool, typer.Option(help="End with a real --smoke sweep (starts Ray).")] = True,
) -> None:
    """Run the contract every task meets: declarations, config round trip, data errors, one epoch,
    checkpoint resume, a smoke sweep. Exit code 1 when a check fails."""
    from dlb_tune.options import SweepOptions
    from dlb_tune.tasks import get_task, load_task_module

    recorded = run_guarded(load_task_module, task_module) if task_module else None
    run_guarded(get_task, task)  # an unknown task: before the contract (torch) is imported
    from dlb_tune.contract import run_checks

    folder = run_guarded(SweepOptions(task=task, data_dir=data_dir).resolved_data_dir)
    runner = None
    if sweep:  # the smoke sweep's runner (importing it imports Ray)
        from dlb_tune.sweep import run_sweep as runner
    failed = run_checks(task, folder, typer.echo, sweep=runner, task_module=recorded)
    typer.echo(f"{task}: {'all checks passed' if not failed else f'{failed} check(s) failed'}")
    if failed:
        raise typer.Exit(1)


@app.command("new-task", epilog=examples(
    "dlb-tune new-task digits", "digits.py and digits.yaml here: an MNIST classifier to edit",
    "dlb-tune new-task fashion --dataset FashionMNIST --dir tasks/", "another torchvision data set, into tasks/"))
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
        fail(str(e))
    typer.echo(f"wrote {module} and {space}")
    typer.echo(f"next: dlb-tune check-task {name} --task-module {module}")


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    try:
        app(prog_name="dlb-tune")
    except Exception as e:  # noqa: BLE001 - what nobody anticipated: one line here, the traceback in a file
        from dlb_tune import logs
        from dlb_tune.show import one_line

        if logs.debug():
            raise
        path = logs.record_crash(e, sys.argv[1:])
        typer.echo(f"error: {one_line(e)} (full traceback in {path})", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
