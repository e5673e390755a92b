"""``python -m bench NAME``: one Typer app; every benchmark registers itself, as dlb-tune's tasks do.

* ``@benchmark("name")`` makes a function a command (its options are Typer's, from its signature);
* ``@figure(number, "name", "title", render=...)`` makes a function one figure of ``python -m bench
  all``: it measures (``quick``, ``data_dir`` and its own options) and returns the figure's record;
  ``render`` turns a saved record into its section of ``table.md``. A figure gets a command of its
  own, and ``all`` takes every figure's options.

Adding a benchmark is one module in ``bench/`` that imports this one and applies a decorator: the
modules that import ``bench.cli`` are discovered and imported before the app runs. The others
(helpers such as ``probes``, which imports Ray) are imported only when a benchmark needs them.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from bench import table
from bench.common import command_line, default_data_dir, loadavg, mode_dir, run_figure, save_json, say

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Benchmarks: how close dlb-tune gets to the limit, beside the plain alternatives. "
                       "Results in bench/results/; `all --quick` runs every figure small (minutes on 2 CPUs).")
FIGURES_PANEL = "Figures (each writes bench/results/<quick|full>/<figure>.json and table.md)"

# the options figures share; a figure's own options are declared where it is
Quick = Annotated[bool, typer.Option("--quick", help="Small settings: all figures in under 20 minutes on 2 CPUs.")]
DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Data folder (default: $DLB_TUNE_DATA, "
                                                                   "else ../shared/data beside the checkout).")]
Tasks = Annotated[Optional[str], typer.Option(help="Comma-separated tasks (default: every registered task).")]


def benchmark(name: str, **settings: Any) -> Callable[[Callable], Callable]:
    """Register the decorated function as the command ``python -m bench NAME``."""
    return app.command(name, **settings)


@dataclass(frozen=True)
class Figure:
    number: int  # its place in `all` and in table.md
    name: str  # its command; its record is <name with underscores>.json
    title: str
    measure: Callable[..., dict[str, Any]]  # (quick, data_dir, its own options) -> the record's body
    render: Callable[[dict[str, Any]], list[str]]  # a saved record -> its markdown lines

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")

    def options(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.measure, eval_str=True).parameters)


FIGURES: dict[str, Figure] = {}


def figure(number: int, name: str, title: str, render: Callable[[dict[str, Any]], list[str]]):
    """Register the decorated ``measure(quick, data_dir, ...)`` as figure ``number``, with a command."""

    def register(measure: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        fig = FIGURES[name] = Figure(number, name, title, measure, render)
        command(name, fig.options().values(), lambda **options: run_figures([fig], **options),
                f"Figure {number}: {(measure.__doc__ or title).strip().splitlines()[0]}")
        return measure

    return register


def figures() -> list[Figure]:
    """Every figure, in order (discovered first)."""
    discover()
    return _in_order()


def _in_order() -> list[Figure]:
    return sorted(FIGURES.values(), key=lambda f: f.number)


def command(name: str, params, body: Callable[..., None], doc: str) -> None:
    """A command named ``name`` with the options ``params`` (``inspect.Parameter``s) that calls ``body``."""

    def run(**options: Any) -> None:
        body(**options)

    run.__signature__ = inspect.Signature(list(params))
    run.__doc__ = doc
    app.command(name, rich_help_panel=FIGURES_PANEL)(run)


def run_figures(chosen: list[Figure], quick: bool = False, data_dir: str | None = None, **options: Any) -> None:
    """Each figure in turn, the table rewritten after each (a long run leaves a table as it goes)."""
    data_dir = data_dir or default_data_dir()
    t0 = time.perf_counter()
    for fig in chosen:
        mine = {k: v for k, v in options.items() if k in fig.options()}
        run_one(fig, lambda: fig.measure(quick=quick, data_dir=data_dir, **mine), quick)
        table.write(quick, figures())
    path = table.write(quick, figures())
    print(path.read_text())
    say(f"wrote {path} ({time.perf_counter() - t0:.0f}s)")


def run_one(fig: Figure, measure: Callable[[], dict[str, Any]], quick: bool) -> None:
    """One figure; a crash is saved as the figure's record so the other figures still run."""
    say(f"figure {fig.number} ({fig.name}) starting")
    try:
        rec = run_figure(fig.key, fig.number, quick, measure)
        say(f"figure {fig.number} ({fig.name}) done in {rec['wall_s']:.0f}s")
    except Exception as e:  # noqa: BLE001 - record and go on
        save_json(mode_dir(quick) / f"{fig.key}.json", {
            "figure": fig.number, "name": fig.key, "mode": "quick" if quick else "full", "command": command_line(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_s": 0.0, "loadavg_start": None,
            "loadavg_end": loadavg(), "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]})
        say(f"figure {fig.number} ({fig.name}) FAILED: {type(e).__name__}: {e}")


@benchmark("table", rich_help_panel=FIGURES_PANEL)
def table_command(quick: Quick = False) -> None:
    """Re-render table.md (and bench/README.md's copy) from the saved figures."""
    path = table.write(quick, figures())
    print(path.read_text())


# --- discovery ----------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parent
_discovered = False


def registering_modules() -> list[str]:
    """The modules of ``bench`` that import this one at their top: those that register benchmarks."""
    found = []
    for path in sorted(p for p in PACKAGE.glob("*.py") if not p.name.startswith("_")):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.ImportFrom) and node.module == __name__ for node in tree.body):
            found.append(f"{__package__}.{path.stem}")
    return found


def discover() -> None:
    """Import every registering module, then add ``all``: every figure in order, every figure's options."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in registering_modules():
        importlib.import_module(module)
    params: dict[str, inspect.Parameter] = {}
    for fig in _in_order():
        for name, param in fig.options().items():
            if params.setdefault(name, param).annotation != param.annotation:
                raise TypeError(f"figure {fig.name}: option '{name}' differs from another figure's")
    # --help lists the figures in order, then table and all; the other commands keep their order
    rank = {fig.name: fig.number for fig in _in_order()} | {"table": len(FIGURES) + 1}
    app.registered_commands.sort(key=lambda c: rank.get(c.name, 0))
    command("all", params.values(), lambda **options: run_figures(figures(), **options),
            "Every figure, in order; table.md after each.")


def main() -> None:
    discover()
    app(prog_name="python -m bench")
