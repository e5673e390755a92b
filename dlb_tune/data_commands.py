"""``dlb-tune data fetch`` and ``dlb-tune data list``: the command-line side of ``datasets``."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlb_tune.cli_common import DataDir, examples, renamed

data_app = typer.Typer(no_args_is_help=True, help="Download the data sets the tasks read, and list them.")


class GloveDim(str, Enum):
    d25 = "25"
    d50 = "50"
    d100 = "100"
    d200 = "200"


# `--dest` was this folder's old name: refused in one line
OldDest = Annotated[Optional[str], typer.Option("--dest", hidden=True, callback=renamed("--data-dir"))]


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _complete_target(incomplete: str) -> list[str]:
    """``all`` and the task names (a data set's name needs its task imported: not on a TAB)."""
    from dlb_tune.cli_common import complete_task

    return ["all"][:"all".startswith(incomplete)] + complete_task(incomplete)


@data_app.command(epilog=examples(
    "dlb-tune data fetch fcn", "the FCN task's data sets, checked, into $DLB_TUNE_DATA (or the per-user folder)",
    "dlb-tune data fetch all --mirror https://mirror.example/dlb", "every data set, from a mirror"))
def fetch(
    target: Annotated[str, typer.Argument(help="A task (its data sets), a data set (`dlb-tune data list`), or all.",
                                          autocompletion=_complete_target)],
    data_dir: DataDir = None,
    _dest: OldDest = None,
    mirror: Annotated[Optional[str], typer.Option(help="Base URL replacing every publisher's: files at URL/<data set>/<file>.")] = None,
    checksums: Annotated[Optional[Path], typer.Option(help="SHA256SUMS file (<sha256>  <data set>/<file>) replacing the pinned hashes it lists.")] = None,
    glove_dim: Annotated[GloveDim, typer.Option(help="Which GloVe Twitter vectors to unpack.")] = GloveDim.d100,
) -> None:
    """Download data sets from their publishers, check their SHA-256, install what the loaders read."""
    from dlb_tune.datasets import read_checksums, resolve_data_dir
    from dlb_tune.fetch import Fetch, data_sets_for
    from dlb_tune.tasks import DataError

    try:
        sets = data_sets_for(target)
        if data_dir:
            Path(data_dir).expanduser().mkdir(parents=True, exist_ok=True)  # a new folder is fine to fetch into
        root = resolve_data_dir(data_dir)
        sums = read_checksums(checksums) if checksums else {}
    except DataError as e:
        _fail(str(e), 2)
    job = Fetch(root, mirror, sums, int(glove_dim.value), echo=typer.echo, tty=sys.stderr.isatty())
    try:
        job.run(sets)
    except DataError as e:
        _fail(str(e), 1)
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to resume the download", 130)


@data_app.command("list", epilog=examples(
    "dlb-tune data list", "what is installed in the data folder, and what is missing",
    "dlb-tune data list --verify", "and check every installed file's SHA-256"))
def list_(
    data_dir: DataDir = None,
    _dest: OldDest = None,
    verify: Annotated[bool, typer.Option(help="Check installed files against their pinned SHA-256 (exit 1 when one differs).")] = False,
) -> None:
    """Each data set: present / partial / missing, size on disk, source, license."""
    from dlb_tune.datasets import resolve_data_dir
    from dlb_tune.fetch import list_lines, verify_lines
    from dlb_tune.tasks import DataError

    try:
        root = resolve_data_dir(data_dir)
    except DataError as e:
        _fail(str(e), 2)
    for line in list_lines(root):
        typer.echo(line)
    if verify:
        lines, ok = verify_lines(root)
        typer.echo("installed files against their pinned SHA-256:")
        for line in lines:
            typer.echo(line)
        if not ok:
            raise typer.Exit(1)
