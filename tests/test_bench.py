"""The benchmarks follow the task registry: a task registered anywhere is benchmarked, no edit.
They register themselves too: ``python -m bench`` is one Typer app built from the decorated
functions of bench/, and every command the docs show parses."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bench import cli, quality, sweep, table
from bench.common import default_data_dir, jsonable
from dlb_tune.tasks import Task, all_tasks, is_builtin
from dlb_tune.tasks.base import _REGISTRY

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@dataclass
class TinyConfig:
    lr: float = 0.1  # step size
    width: int = 4  # units


class Tiny(Task):
    """A fifth task, known only to this test: no entry in bench/, no file in search_spaces/."""

    name = "tiny"
    Config = TinyConfig


@pytest.fixture
def tiny_space(monkeypatch, tmp_path):
    all_tasks()  # the real tasks first, so the registry is complete before the test adds one
    # tasks that other tests registered in this process (check-task's broken copies, the test
    # kit's fcn_counted) stay registered: hide them, whatever order the tests run in
    for name, cls in list(_REGISTRY.items()):
        if not is_builtin(cls):
            monkeypatch.delitem(_REGISTRY, name)
    monkeypatch.setitem(_REGISTRY, "tiny", Tiny)
    path = tmp_path / "tiny.yaml"
    path.write_text("task: tiny\nmetric: val_acc\nmode: max\nmax_epochs: 3\nnum_samples: 4\n"
                    "params:\n  lr: {loguniform: [0.01, 0.1]}\n  width: 4\n")
    return path


def test_runner_plans_every_registered_task(tiny_space, tmp_path):
    assert "tiny" in all_tasks()
    for task in all_tasks():
        space = str(tiny_space) if task == "tiny" else None
        runs = sweep.plan(sweep.Request(task, default_data_dir(), str(tmp_path), space=space, smoke=True))
        assert runs[0].tag == "best" and runs[0].opts.task == task and runs[0].opts.cpus == sweep.CPUS
        baselines = sweep.EXTRAS.get(task, sweep.Extras()).baselines
        assert [r.tag for r in runs[1:]] == list(baselines)
        assert all(r.opts.task == task and r.opts.num_samples == 1 for r in runs[1:])


def test_smoke_report_goes_beside_its_storage(tmp_path):
    args = sweep.Request("fcn", default_data_dir(), str(tmp_path), smoke=True)
    assert sweep.output_path(args) == tmp_path / "fcn-smoke.json"
    assert sweep.output_path(sweep.Request("fcn", default_data_dir())) == sweep.RESULTS / "fcn.json"


def test_quality_figure_lists_every_registered_task(tiny_space):
    out = quality.measure(quick=True, data_dir="unused")
    assert list(out["tasks"]) == list(all_tasks())
    assert out["tasks"]["tiny"]["status"] == "missing"
    assert "python -m bench sweep tiny" in out["tasks"]["tiny"]["why"]


def test_unknown_task_or_baseline_is_one_line():
    for argv in (["nope"], ["vae", "--smoke", "--baselines", "nope"]):
        result = runner.invoke(app(), ["sweep", *argv])
        assert result.exit_code == 1 and result.output.startswith("error: ") and result.output.count("\n") == 1, \
            result.output


def test_a_replay_with_no_seed_to_run_is_one_line():
    """``--first-seed`` at or past ``--seeds`` would run nothing and write nothing new."""
    result = runner.invoke(app(), ["replay", "fcn", "--seeds", "20", "--first-seed", "20"])
    assert result.exit_code == 1 and result.output == "error: --first-seed 20 leaves no seed below --seeds 20\n", \
        result.output


# --- the app --------------------------------------------------------------------------------------


def app() -> typer.Typer:
    cli.discover()
    return cli.app


def commands() -> dict:
    return typer.main.get_command(app()).commands


def test_every_module_that_registers_a_benchmark_is_discovered():
    """A decorator applied in a module that imports it some other way would go unseen."""
    decorated = set()
    for path in (ROOT / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            calls = [d.func for d in getattr(node, "decorator_list", ()) if isinstance(d, ast.Call)]
            if any(getattr(f, "id", getattr(f, "attr", None)) in ("benchmark", "figure") for f in calls):
                decorated.add(f"bench.{path.stem}")
    assert {"bench.sweep", "bench.scaling", "bench.replay"} <= decorated  # the scan sees decorators
    assert decorated <= set(cli.registering_modules()) | {"bench.cli"}


def option_names(command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def test_figures_come_from_the_registry_and_all_takes_every_figures_options():
    figures, cmds = cli.figures(), commands()
    assert [f.number for f in figures] == list(range(1, len(figures) + 1))
    per_figure = set().union(*(option_names(cmds[f.name]) for f in figures))
    assert {"--quick", "--data-dir", "--seeds", "--tasks"} <= per_figure
    assert option_names(cmds["all"]) == per_figure
    assert "--seeds" not in option_names(cmds["quality"])  # a figure's own options are its own


# The commands and options of bench before it became one Typer app (its argparse parsers, and the
# scripts data_fetch.py and ray_train_overhead.py), which notes and scripts call: new ones are
# free, a renamed one breaks someone's command line. Figures take only their own options now.
BEFORE = {
    "all": "--quick --data-dir --seeds --tasks", "table": "--quick",
    "sweep-efficiency": "--quick --data-dir", "early-stopping": "--quick --data-dir --seeds --tasks",
    "quality": "--quick --data-dir --tasks", "data-path": "--quick --data-dir", "scaling": "--quick --data-dir",
    "sweep": "--data-dir --storage --space --seed --set --objective --baselines --reuse --smoke --out",
    "gpu": "--data-dir --tasks --budget --deadline --limit --out", "autoscale": "--data-dir --samples --epochs",
    "record": "--grid --limit --epochs --jobs --out --data-dir",
    "driver-scale": "--workers --trials --table --scale --budget-s --search --render",
    "replay": "--seeds --strategies --scale --table --minutes --jobs --overhead --summary --runs-only "
              "--target-quantile",
    "mutation": "--data-dir --children --keep", "data-fetch": "--data-dir",
    "ray-train-overhead": "--epochs --limit --data-dir --out",
}


def test_every_command_and_option_of_before_still_works():
    cmds = commands()
    for name, options in BEFORE.items():
        assert name in cmds, f"python -m bench {name} is gone"
        missing = set(options.split()) - option_names(cmds[name])
        assert not missing, f"python -m bench {name} lost {sorted(missing)}"


def documented_commands() -> list[tuple[str, str]]:
    """(file, the words after ``python -m bench``) for every such command in the docs, the benchmarks'
    docstrings and bench/gpu_check.sh; ``[...]`` (optional parts) kept, comments dropped."""
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "bench").rglob("*.md")),
             *sorted((ROOT / "bench").glob("*.py")), ROOT / "bench" / "gpu_check.sh"]
    found = []
    for path in (p for p in files if p.is_file()):
        for line in re.findall(r"python -m bench ([^`\n\"]*)", path.read_text()):
            found.append((path.name, line.split("  #")[0].split(" # ")[0].replace("[", " ").replace("]", " ")))
    return found


def test_every_documented_command_and_option_exists():
    cmds, seen = commands(), set()
    for where, line in documented_commands():
        words = line.split()
        if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
            continue  # NAME, --help, {fig.name}: a placeholder, not a command
        assert words[0] in cmds, f"{where}: python -m bench {line}: no command '{words[0]}'"
        options = option_names(cmds[words[0]]) | {"--help"}
        for word in (w.split("=")[0] for w in words[1:] if w.startswith("--")):
            assert word in options, f"{where}: python -m bench {line}: '{words[0]}' has no option {word}"
        seen.add(words[0])
    assert {"all", "replay", "sweep", "record", "gpu"} <= seen  # the docs were read


def test_listing_the_benchmarks_imports_neither_torch_nor_ray():
    """`python -m bench --help` stays quick, and figure 1's bare leg (which imports bench.cli)
    measures a process without Ray: benchmarks import the heavy libraries when they run."""
    import subprocess
    import sys

    code = ("import sys\nfrom bench import cli\ncli.discover()\n"
            "assert not {'torch', 'ray'} & set(sys.modules), sorted({'torch', 'ray'} & set(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_command_shows_its_help():
    for name in commands():
        result = runner.invoke(app(), [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (name, result.output)


def test_the_benchmark_table_goes_into_bench_readme(tmp_path):
    assert table.README == ROOT / "bench" / "README.md"
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench-table:quick -->\nold\n<!-- /bench-table:quick -->\nafter\n")
    table.update_readme("# dlb-tune benchmarks (quick)\n\n## 1. Sweep efficiency\nrows", "quick", readme)
    assert readme.read_text() == ("intro\n<!-- bench-table:quick -->\n## dlb-tune benchmarks (quick)\n\n"
                                  "### 1. Sweep efficiency\nrows\n<!-- /bench-table:quick -->\nafter\n")


def test_recorded_numbers_keep_small_config_values():
    # bench records carry configs (weight decay 1.5e-4, lr 3e-5) beside metrics
    out = jsonable({"weight_decay": 1.5e-4, "lr": 3e-5, "val_acc": 0.6452702879905701, "nats": 6768.34,
                    "bad": float("nan")})
    assert out == {"weight_decay": 1.5e-4, "lr": 3e-5, "val_acc": 0.64527, "nats": 6768.34, "bad": None}
