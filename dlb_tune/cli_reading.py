"""The commands that read a sweep back: ``results``, ``ls``, ``tensorboard``, ``status``, ``report``,
``best`` and ``compare``. They read the experiment folder's files and run nothing from it (the
lone exception, ``best --seeds``, re-trains the top configs with the task module the user names);
``dlb_tune.cli`` registers them on the app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlb_tune.cli_common import (CompareFormat, DataDir, ExperimentName, Format, RecordedTaskModule, Storage, check_seeds,
                                 complete_experiment, fail, load, run_guarded)


# Each command's Examples block (its help's epilog): command line, what it does, twice
EXAMPLES = {
    "results": ["dlb-tune results fcn-20250101-120000", "the trials as a table, then the test result",
                "dlb-tune results my-sweep --format csv -o trials.csv", "every column, as CSV, into a file"],
    "ls": ["dlb-tune ls", "the experiments under ./dlb-tune-runs (or $DLB_TUNE_RESULTS)",
           "dlb-tune ls --storage s3://bucket/runs", "those kept on object storage"],
    "tensorboard": ["dlb-tune tensorboard my-sweep", "on http://127.0.0.1:6006, while the sweep runs or after",
                    "dlb-tune tensorboard my-sweep --port 0", "on any free port (the line it prints says which)"],
    "status": ["dlb-tune status my-sweep", "trials by state, best so far, time left",
               "dlb-tune status my-sweep --watch --every 30", "refreshed every 30 s until the sweep ends"],
    "report": ["dlb-tune report my-sweep", "report.md and its figures in the experiment folder",
               "dlb-tune report my-sweep --storage s3://bucket/runs", "written beside its local copy, then uploaded"],
    "best": ["dlb-tune best my-sweep -o best.yaml", "the winner as a space file; `dlb-tune sweep TASK --space best.yaml` trains it",
             "dlb-tune best my-sweep --seeds 3 --top 3", "re-train the top 3 with 3 seeds each; the best mean wins",
             "dlb-tune best my-sweep --trial 3f2a9c1d -o long.yaml", "a Pareto point's config, to train it longer"],
    "compare": ["dlb-tune compare tpe-run random-run", "two sweeps side by side: best value, when reached, trials, wall time",
                "dlb-tune compare a b c --format csv", "as CSV, one row per sweep"],
}


def guard_board(fn, *args, **kwargs):
    """``run_guarded`` plus TensorBoard's own errors (it would not start, its files could not be
    written): one line too."""
    from dlb_tune.board import BoardError

    try:
        return run_guarded(fn, *args, **kwargs)
    except BoardError as e:
        fail(str(e))


def results(
    name: ExperimentName,
    storage: Storage = None,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout (parquet: NAME.parquet in this folder by default).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Table: every column, not only the searched parameters.")] = False,
) -> None:
    """Show a finished sweep's trials and its final test result, from disk."""
    from dlb_tune.experiment import experiment_dir, find_experiment, read_results, read_space, resolve_storage
    from dlb_tune.storage import is_uri
    from dlb_tune.storage import check_storage

    root = run_guarded(resolve_storage, storage)
    run_guarded(check_storage, root)
    # a stored sweep is read where it lies; a local one may also be named by its folder
    exp_dir = experiment_dir(name, storage) if is_uri(root) else run_guarded(find_experiment, name, storage)
    try:
        df, final = run_guarded(read_results, str(exp_dir))
    except OSError:  # FileNotFoundError, or a store that cannot say more
        fail(f"no results for '{name}' in {exp_dir} (the sweep has not finished?)")
    if format is Format.parquet:  # binary: never to a terminal; NAME.parquet here unless told
        output = output or Path(f"{Path(name).name}.parquet")
        df.to_parquet(output, index=False)
        typer.echo(f"wrote {output}")
        return
    text = {
        Format.csv: lambda: df.to_csv(index=False),
        Format.json: lambda: df.to_json(orient="records", indent=2),
        Format.table: lambda: "\n".join(_table(df, None if all_ else run_guarded(read_space, exp_dir))),
    }[format]()
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}")
    else:
        from dlb_tune.summary import summary_lines

        typer.echo(text)
        if format is Format.table and final:
            for line in summary_lines(final, df):
                typer.echo(line)


def _table(df, spec) -> list[str]:
    """Trial, status, epochs, the metric and the searched parameters (``spec`` None: every column),
    fitted to the terminal: columns that do not fit go in a block below, the trial id repeated."""
    from dlb_tune.show import table

    if spec is not None:
        keep = ["trial_id", "status", "epochs", f"best_{spec.metric}", spec.metric]
        keep += [f"config/{p}" for p in spec.searched()]
        df = df[[c for c in keep if c in df]].rename(columns=lambda c: c.removeprefix("config/"))
    rows = df.astype(object).where(df.notna(), None).values.tolist()
    numeric = [c for c in df.columns if df[c].dtype.kind in "fiu"]
    return table(list(df.columns), rows, whole=[c for c in df.columns if c != "error"], right=numeric)


def list_sweeps(storage: Storage = None) -> None:
    """List the experiments under --storage: task, state, trials, best (validation), test result, start date."""
    from dlb_tune.listing import list_experiments, table_lines

    try:
        rows = run_guarded(list_experiments, storage)
    except FileNotFoundError as e:
        fail(str(e))
    if not rows:
        from dlb_tune.experiment import resolve_storage

        typer.echo(f"no experiments in {resolve_storage(storage)}")
        return
    for line in table_lines(rows):
        typer.echo(line)


# --- after a sweep: TensorBoard, report, best, compare; before one: plan ------------------------


def tensorboard(
    name: ExperimentName,
    storage: Storage = None,
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 6006,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
) -> None:
    """Start TensorBoard over an experiment: per-epoch scalars, HParams, the task's images."""
    from dlb_tune import board

    if not _loopback(host):
        typer.echo(f"warning: TensorBoard has no authentication: on --host {host} anyone who can reach this "
                   f"machine reads the experiment (127.0.0.1 and an SSH tunnel keep it private)", err=True)
    exp = load(name, storage)
    written = guard_board(board.write_board, exp.path)
    if port and not _port_free(host, port):
        typer.echo(f"port {port} is taken; using a free one", err=True)
        port = 0
    proc, url = guard_board(board.start_tensorboard, exp.path, port or None, host)
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


def status(
    name: ExperimentName,
    storage: Storage = None,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until the sweep ends.")] = False,
    every: Annotated[float, typer.Option(min=1.0, help="Seconds between refreshes with --watch.")] = 10.0,
) -> None:
    """Where a sweep stands, running or finished: trials by state, best so far, time left."""
    import sys

    from dlb_tune.status import watch as watch_sweep

    try:
        run_guarded(watch_sweep, name, storage, every if watch else None, typer.echo, tty=sys.stdout.isatty())
    except KeyboardInterrupt:
        raise typer.Exit(0)


def report(
    name: ExperimentName,
    storage: Storage = None,
) -> None:
    """Write report.md and its figures into the experiment folder (a stored one: its local copy,
    then uploaded to the store)."""
    from dlb_tune.experiment import cached_from, experiment_dir
    from dlb_tune.storage import is_uri, shown

    exp = load(name, storage)  # an unknown experiment: before matplotlib is imported
    from dlb_tune.report import headline, upload_report, write_report

    path, figures = run_guarded(write_report, exp)
    for line in headline(exp):
        typer.echo(line.replace("**", ""))
    typer.echo(f"wrote {path} with {len(figures)} figure(s):")
    for fig in figures:
        typer.echo(f"  {fig.relative_to(exp.path)}")
    if cached_from(exp.path):
        stored = name if is_uri(name) else experiment_dir(name, storage)
        sent = run_guarded(upload_report, exp, [path, *figures], stored)
        typer.echo(f"uploaded {sent} file(s) (report.md and its figures) to {shown(stored)}")


def best(
    name: ExperimentName,
    storage: Storage = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the YAML here too.")] = None,
    seeds: Annotated[int, typer.Option(min=0, help="Re-run the top configs with this many seeds (2 or more); rank by mean.")] = 0,
    top: Annotated[int, typer.Option(min=1, help="Configs to re-run with --seeds.")] = 3,
    data_dir: DataDir = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPUs the --seeds runs may use (default: the sweep's).")] = None,
    task_module: RecordedTaskModule = None,
    trial: Annotated[Optional[str], typer.Option(
        help="This trial's config instead of the winner's (a Pareto point, a runner-up).")] = None,
) -> None:
    """Print the best config as a space file with every parameter fixed (feed it to --space).

    With --seeds K, the top configs are trained again with K seeds each (progress and ranking on
    stderr) and the printed config is the one with the best mean; a task of your own needs
    --task-module then.
    """
    from dlb_tune.best import best_yaml, trial_yaml

    check_seeds(seeds)
    if trial and seeds:
        fail("--trial and --seeds: choose one (--seeds ranks the top configs again)")
    exp = load(name, storage)
    text = run_guarded(trial_yaml, exp, trial) if trial else run_guarded(best_yaml, exp)
    if seeds:
        from dlb_tune.reruns import ranking_lines, rerun_seeds, seed_yaml
        from dlb_tune.tasks import load_task_module

        if task_module:  # re-training runs the task's code: only a module named here
            run_guarded(load_task_module, task_module)

        err = lambda line: typer.echo(line, err=True)  # noqa: E731 - stdout stays valid YAML
        result = run_guarded(rerun_seeds, exp, seeds, top, data_dir=data_dir, cpus=cpus, echo=err)
        for line in ranking_lines(result):
            err(line)
        text = seed_yaml(exp, result)
    typer.echo(text, nl=False)
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


def compare(
    names: Annotated[list[str], typer.Argument(help="Experiment names (or folders).",
                                               autocompletion=complete_experiment)],
    storage: Storage = None,
    format: Annotated[CompareFormat, typer.Option("--format", help="Output format.")] = CompareFormat.table,
) -> None:
    """Sweeps side by side: best validation metric and when it was reached, trials, wall time; then the test result.

    time_to_best_val_s: the first second after the sweep started at which any trial's validation
    value was as good as the winner's. The target is judged on the test split only.
    """
    exps = [load(n, storage) for n in names]
    from dlb_tune.report_numbers import compare as compare_sweeps

    df = compare_sweeps(exps)
    if format is CompareFormat.csv:
        typer.echo(df.to_csv(index=False), nl=False)
    elif format is CompareFormat.json:
        typer.echo(df.to_json(orient="records", indent=2))
    else:
        from dlb_tune.show import table

        records = df.drop(columns=["test_metric"]).to_dict("records")
        fields = [c for c in df.columns if c not in ("name", "test_metric")]
        rows = [[field, *(_cell(field, r[field]) for r in records)] for field in fields]
        header = ["name", *(r["name"] for r in records)]
        for line in table(header, rows, whole=header):
            typer.echo(line)


def _cell(field: str, value) -> str:
    """A compare cell: a task without a target has none, and so no verdict."""
    missing = value is None or (isinstance(value, float) and value != value)
    if missing:
        return "none" if field == "target" else "-"
    return value


