"""``python -m bench cli``: how long the commands that should answer at once take, start-up included.

Each command runs as a user runs it (``dlb-tune ARGS`` in its own process), several times; the
median is reported. ``--other PATH`` times a second ``dlb-tune`` (another checkout's, e.g. main's
``.venv/bin/dlb-tune``) in the same run, interleaved with this one, so both see the same load. The
reading commands read one finished experiment: ``--storage``/``--name``, else a two-trial smoke
sweep made first. The table goes to ``bench/results/cli.md``; it reports, it does not judge.

    python -m bench cli [--repeat 5] [--other /work/main/.venv/bin/dlb-tune]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli import DataDir, benchmark
from bench.common import RESULTS, command_line, default_data_dir

HERE = Path(sys.executable).with_name("dlb-tune")
NAME = "timed"


def commands(name: str, bad_space: Path) -> list[list[str]]:
    """What is timed. Only refusals that every version refuses (an older one may start Ray on a
    request this one refuses)."""
    return [["--help"], ["--version"], ["tasks"], ["ls"], ["status", name], ["results", name], ["best", name],
            ["compare", name, name], ["sweep", "foo"], ["sweep", "fcn", "--set", "lr"],
            ["sweep", "fcn", "--space", str(bad_space)], ["report", "nothing-here"]]


def needs_storage(args: list[str]) -> bool:
    return args[0] in ("ls", "status", "results", "best", "compare", "sweep", "report")


def timed(exe: Path, args: list[str], storage: Path, cwd: Path) -> float:
    full = [str(exe), *args, *(["--storage", str(storage)] if needs_storage(args) else [])]
    t = time.perf_counter()
    subprocess.run(full, cwd=cwd, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t


def smoke_sweep(storage: Path, name: str, data_dir: str, cwd: Path) -> None:
    """The experiment the reading commands read: two one-epoch trials on a few hundred examples."""
    done = subprocess.run([str(HERE), "sweep", "fcn", "--smoke", "--max-epochs", "1", "--limit", "256",
                           "--data-dir", data_dir, "--storage", str(storage), "--name", name],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"the smoke sweep failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


@benchmark("cli")
def cli_speed(
    repeat: Annotated[int, typer.Option(min=1, help="Runs of each command; the median is reported.")] = 5,
    other: Annotated[Optional[Path], typer.Option(help="Another dlb-tune executable, timed beside this one.")] = None,
    storage: Annotated[Optional[Path], typer.Option(help="Storage holding the experiment --name (default: a smoke sweep made first).")] = None,
    name: Annotated[str, typer.Option(help="The finished experiment the reading commands read.")] = NAME,
    data_dir: DataDir = None,
) -> None:
    """Median wall time of --help, tasks, ls, status, results, best, compare and refusals -> bench/results/cli.md."""
    exes = {"this checkout": HERE, **({f"{other}": other} if other else {})}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        if storage is None:
            storage = cwd / "runs"
            t = time.perf_counter()
            smoke_sweep(storage, name, str(data_dir or default_data_dir()), cwd)
            print(f"smoke sweep for the reading commands: {time.perf_counter() - t:.0f}s", file=sys.stderr)
        bad = cwd / "bad.yaml"
        bad.write_text("task: fcn\nmetric: val_acc\nmode: max\nparams: {lr: {loguniform: [1, }\n")
        load_start = os.getloadavg()
        medians: dict[str, list[float]] = {}
        for args in commands(name, bad):
            runs: dict[str, list[float]] = {label: [] for label in exes}
            for _ in range(repeat):  # interleaved: both executables see the same load
                for label, exe in exes.items():
                    runs[label].append(timed(exe, args, storage, cwd))
            key = " ".join("NAME" if a == name else "bad.yaml" if a == str(bad) else a for a in args)
            medians[key] = [statistics.median(runs[label]) for label in exes]
            print(f"{key:32} " + "  ".join(f"{m:6.2f}s" for m in medians[key]), file=sys.stderr)
    lines = render(medians, list(exes), repeat, load_start, os.getloadavg())
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS / "cli.md").write_text(text)


def render(medians: dict[str, list[float]], labels: list[str], repeat: int, load_start, load_end) -> list[str]:
    head = ["command", *[f"{label} (s)" for label in labels]]
    lines = ["# `dlb-tune` commands, start-up included", "",
             f"Median of {repeat} runs each, as `dlb-tune ARGS` in its own process; NAME: a finished two-trial "
             f"smoke sweep. Load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end "
             f"({os.cpu_count()} CPUs); {time.strftime('%Y-%m-%d %H:%M %Z')}.", "",
             f"    {command_line()}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, values in medians.items():
        lines.append(f"| `{key}` | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return lines
