"""Commands that answer at once: which heavy libraries each command imports, shell completion of
task and experiment names, and requests beyond this machine refused before Ray.

Each command runs in a fresh interpreter (``dlb_tune.cli.main`` with its argv), which then writes
``sorted(sys.modules)``: what the command imported, start-up included. How long they take is
``python -m bench cli``'s business (bench/results/cli.md), not a test's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from finished_sweep import finished_sweep

HEAVY = ("torch", "ray", "optuna", "pandas", "matplotlib", "pyarrow")
# Experiment.trials is a DataFrame read from results.parquet: the commands that read trials need both
TRIALS = {"pandas", "pyarrow"}

RUN = """import json, sys
from dlb_tune.cli import main
out, sys.argv = sys.argv[1], ["dlb-tune", *sys.argv[2:]]
try:
    main()
    code = 0
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (e.code is not None)
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def run(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    """Exit code, the heavy top-level packages imported, and stdout + stderr of ``dlb-tune ARGV``."""
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", RUN, str(out), *argv], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, **(env or {})})
    assert out.exists(), done.stderr[-2000:]
    record = json.loads(out.read_text())
    heavy = {m for m in HEAVY if m in record["modules"]}
    return record["code"], heavy, done.stdout + done.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    return finished_sweep(tmp_path_factory, data_dir)


@pytest.mark.parametrize("argv, needs", [
    (["--help"], set()),
    (["--version"], set()),
    (["tasks"], set()),
    (["sweep", "--help"], set()),
])
def test_commands_that_read_no_experiment_import_nothing_heavy(tmp_path, argv, needs):
    code, heavy, output = run(tmp_path, *argv)
    assert code == 0, output
    assert heavy == needs, f"dlb-tune {' '.join(argv)} imported {sorted(heavy)}"


def test_tasks_lists_every_task_from_the_space_files(tmp_path):
    code, heavy, output = run(tmp_path, "tasks")
    assert code == 0 and not heavy, (heavy, output)
    table = output.split("\n\n")[0].splitlines()  # the table, then the space files
    names = [line.split()[0] for line in table[1:] if not line.startswith(" ")]
    assert names == ["cnn", "emotion", "fcn", "vae"], output
    assert re.search(r"^fcn +val_acc \(max\) +0\.985 ", output, re.M), output


@pytest.mark.slow
@pytest.mark.parametrize("argv, needs", [
    (["ls"], {"pyarrow"}),  # results.parquet's row count and best column, read by pyarrow alone
    (["status", "s"], TRIALS),
    (["results", "s"], TRIALS),
    (["best", "s"], TRIALS),
    (["compare", "s", "s"], TRIALS),
])
def test_commands_on_a_finished_sweep_import_only_what_reads_it(finished, tmp_path, argv, needs):
    code, heavy, output = run(tmp_path, *argv, "--storage", str(finished.storage))
    assert code == 0, output
    assert heavy == needs, f"dlb-tune {' '.join(argv)} imported {sorted(heavy)}; expected {sorted(needs)}"


def bad_space(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("task: fcn\nmetric: val_acc\nmode: max\nparams: {lr: {loguniform: [1, }\n")
    return str(path)


REFUSALS = [
    (["sweep", "foo"], "unknown task 'foo'"),
    (["sweep", "fcn", "--space", "{bad}"], "not valid YAML"),
    (["sweep", "fcn", "--set", "lr"], "--set expects key=value"),
    (["sweep", "fcn", "--set", "lr={loguniform: [0.5, 0.1]}"], "--set lr"),
    (["sweep", "fcn", "--name", "../x"], "--name '../x'"),
    (["sweep", "fcn", "--cpus", "100000"], "--cpus 100000 asked for, but this machine has"),
    (["sweep", "fcn", "--gpus", "64"], "64 GPU(s) asked for, but this machine has"),
    (["plan", "foo"], "unknown task 'foo'"),
    (["check-task", "foo"], "unknown task 'foo'"),
    (["resume", "nothing-here"], "no sweep named 'nothing-here'"),
    (["status", "nothing-here"], "nothing-here"),
    (["results", "nothing-here"], "nothing-here"),
    (["report", "nothing-here"], "nothing-here"),
    (["best", "nothing-here"], "nothing-here"),
]


@pytest.mark.parametrize("argv, says", REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_bad_input_is_refused_in_one_line_without_heavy_imports(tmp_path, argv, says):
    argv = [a.replace("{bad}", bad_space(tmp_path)) for a in argv]
    storage = [] if argv[0] == "check-task" else ["--storage", str(tmp_path / "runs")]
    code, heavy, output = run(tmp_path, *argv, *storage)
    assert code == 2, output
    assert output.count("\n") == 1 and output.startswith("error: ") and says in output, output
    assert not heavy, f"dlb-tune {' '.join(argv)} imported {sorted(heavy)} to refuse"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "it left an experiment"


def test_a_cpu_request_beyond_this_machine_starts_no_ray(tmp_path):
    """`sweep fcn --cpus 64` on a smaller machine: one line, before Ray is imported or a session
    folder is made (Ray's are /tmp/ray/session_*; a fresh temp dir shows any new one)."""
    cpus = len(os.sched_getaffinity(0))
    env = {"RAY_TMPDIR": str(tmp_path / "ray"), "TMPDIR": str(tmp_path)}
    code, heavy, output = run(tmp_path, "sweep", "fcn", "--cpus", str(cpus + 1), "--storage",
                              str(tmp_path / "runs"), env=env)
    assert code == 2 and output == f"error: --cpus {cpus + 1} asked for, but this machine has {cpus} CPU(s) " \
                                     f"(use --address to run on a cluster)\n", output
    assert "ray" not in heavy and not (tmp_path / "ray").exists()


# --- completion, as the shell asks for it -----------------------------------------------------------


def complete(tmp_path: Path, line: str) -> tuple[list[str], set[str]]:
    """What ``dlb-tune``'s bash completion offers for ``line`` (the cursor at its end), and the heavy
    modules it imported: Typer's protocol, as the script `--install-completion` writes runs it."""
    words = line.split(" ")
    code, heavy, output = run(tmp_path, env={"_DLB_TUNE_COMPLETE": "complete_bash", "COMP_WORDS": line,
                                             "COMP_CWORD": str(len(words) - 1)})
    assert code == 0, output
    return output.split(), heavy


def make_experiments(storage: Path, *names: str) -> None:
    for name in names:
        (storage / name).mkdir(parents=True)
        (storage / name / "space.yaml").write_text("task: fcn\nmetric: val_acc\nmode: max\n")
    (storage / "not-an-experiment").mkdir()


def test_report_tab_completes_the_experiments_of_the_storage_given(tmp_path):
    make_experiments(tmp_path / "runs", "fcn-a", "fcn-b", "cnn-c")
    offered, heavy = complete(tmp_path, f"dlb-tune report --storage {tmp_path / 'runs'} ")
    assert offered == ["cnn-c", "fcn-a", "fcn-b"] and not heavy, (offered, heavy)
    offered, _ = complete(tmp_path, f"dlb-tune status --storage {tmp_path / 'runs'} fcn")
    assert offered == ["fcn-a", "fcn-b"]


def test_experiment_names_come_from_the_default_storage_without_storage(tmp_path):
    make_experiments(tmp_path / "dlb-tune-runs", "here")  # ./dlb-tune-runs: the default
    for command in ("report", "results", "best", "resume", "tensorboard", "compare here"):
        offered, _ = complete(tmp_path, f"dlb-tune {command} ")
        assert offered == (["here"] if command != "compare here" else []), (command, offered)


def test_sweep_tab_completes_task_names_and_enum_values(tmp_path):
    offered, heavy = complete(tmp_path, "dlb-tune sweep ")
    assert offered == ["cnn", "emotion", "fcn", "vae"] and not heavy, (offered, heavy)
    assert complete(tmp_path, "dlb-tune plan f")[0] == ["fcn"]
    assert complete(tmp_path, "dlb-tune data fetch ")[0] == ["all", "cnn", "emotion", "fcn", "vae"]
    assert complete(tmp_path, "dlb-tune sweep fcn --scheduler ")[0] == ["asha", "fifo"]


def test_every_command_shows_examples_in_its_help():
    from typer.main import get_command

    from dlb_tune.cli import app

    def commands(group, path=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, (*path, name))
            else:
                yield " ".join((*path, name)), cmd

    lacking = [name for name, cmd in commands(get_command(app)) if "Examples:" not in (cmd.epilog or "")]
    assert not lacking, f"no Examples in the help of: {', '.join(lacking)}"
