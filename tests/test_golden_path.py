"""The user's path, for every registered task and for a task made by ``new-task``.

One sweep per task on its shipped space file, unchanged but for size (``SIZE``), run through
the CLI as a user runs it, then every command that reads it back: ``ls``, ``status`` (and one
frame of ``--watch``), ``results`` in every format, ``report``, ``best -o``, a second sweep that
``--enqueue``s that file, ``compare``, ``resume`` and ``tensorboard``. The task list comes from the
registry, so a new built-in task is on this path without an edit here.
"""

from __future__ import annotations

import io
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import board_client
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.experiment import read_space, read_tune_states
from dlb_tune.tasks import all_tasks, is_builtin

runner = CliRunner()
OWN = "owntask"  # written by `dlb-tune new-task`, loaded with --task-module
GOLDEN = [name for name, cls in all_tasks().items() if is_builtin(cls)] + [OWN]
STANDARD_FIGURES = {"metric_vs_epoch", "best_so_far", "parallel_coordinates"}  # every sweep's report draws these
SIZE = ["--smoke", "--limit", "128"]  # the task's tiny model, 2 trials (smoke_trials) x 2 epochs, 128 examples per split


@dataclass
class Golden:
    task: str
    storage: Path
    name: str
    sweep_output: str
    task_module: list[str]  # ["--task-module", path] for the own task, else []

    @property
    def exp(self) -> Path:
        return self.storage / self.name

    def final(self) -> dict:
        return json.loads((self.exp / "final.json").read_text())

    def cli(self, *args: str, task_module: bool = False):
        """A command on this sweep, as a user types it (with ``--task-module`` where it needs one)."""
        extra = self.task_module if task_module else []
        result = runner.invoke(app, [*args, "--storage", str(self.storage), *extra])
        assert result.exit_code == 0, f"dlb-tune {' '.join(args)}: exit {result.exit_code}\n{result.output}"
        return result


@pytest.fixture(scope="module", params=GOLDEN)
def golden(request, tmp_path_factory, data_dir, ray_local) -> Golden:
    task = request.param
    root = tmp_path_factory.mktemp(f"golden-{task}")
    task_module = []
    if task == OWN:
        made = runner.invoke(app, ["new-task", OWN, "--dir", str(root / "my_tasks")])
        assert made.exit_code == 0, made.output
        task_module = ["--task-module", str(root / "my_tasks" / f"{OWN}.py")]
    storage = root / "runs"
    result = runner.invoke(app, ["sweep", task, *task_module, "--data-dir", str(data_dir), *SIZE,
                                 "--storage", str(storage), "--name", "first"])
    assert result.exit_code == 0, result.output
    return Golden(task, storage, "first", result.output, task_module)


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def smoke_trials(golden) -> int:
    """--smoke runs 2 trials, or one per value of a ``compare_by`` parameter (emotion's 4 cells)."""
    spec = read_space(golden.exp)
    return max(2, len(spec.params[spec.compare_by].values)) if spec.compare_by else 2


def test_sweep_prints_the_commands_that_read_it(golden):
    assert f"next: dlb-tune report first --storage {golden.storage}; dlb-tune best first" in golden.sweep_output
    final = golden.final()
    assert final["trials"]["total"] == smoke_trials(golden) and not final["errors"], final  # ran in Ray's workers
    assert "test" in final and final["best"]["trial_id"]
    assert (golden.exp / "dlb-tune.log").exists()  # where Ray's own log lines went
    recorded = json.loads((golden.exp / "sweep.json").read_text())["task_module"]
    assert recorded == (str(Path(golden.task_module[1]).resolve()) if golden.task_module else None)


def test_ls_shows_task_state_trials_best_and_test(golden):
    lines = golden.cli("ls").output.splitlines()
    assert _cells(lines[0]) == ["name", "task", "state", "trials", "best", "test", "date"]
    [row] = [_cells(line) for line in lines[1:] if line.startswith("first ")]
    final = golden.final()
    metric = final["metric"]
    test_value = final["test"][final["test_metric"]] if "test_metric" in final else None
    assert row[1:5] == [golden.task, "finished", str(smoke_trials(golden)), f"{final['best'][metric]:.4g}"], row
    assert test_value is not None and row[5].startswith(f"{test_value:.4g}"), (row, final)


def test_status_and_the_last_frame_of_watch_agree(golden):
    plain = golden.cli("status", "first").output.splitlines()
    watched = golden.cli("status", "first", "--watch", "--every", "1").output.splitlines()
    assert re.fullmatch(r"-- \d\d:\d\d:\d\d --", watched[0]) and watched[1:] == plain
    final = golden.final()
    assert plain[0] == f"first ({golden.task}): finished in {_clock(final['command_s'])}", plain


def _clock(seconds: float) -> str:
    from dlb_tune.show import clock

    return clock(seconds)


def test_results_in_every_format(golden, tmp_path):
    trials = pd.read_parquet(golden.exp / "results.parquet")
    table = golden.cli("results", "first").output
    assert all(t in table for t in trials["trial_id"]) and "test (evaluated once)" in table
    csv = pd.read_csv(io.StringIO(golden.cli("results", "first", "--format", "csv").output))
    assert list(csv["trial_id"]) == list(trials["trial_id"])
    records = json.loads(golden.cli("results", "first", "--format", "json").output)
    assert [r["trial_id"] for r in records] == list(trials["trial_id"])
    golden.cli("results", "first", "--format", "parquet", "--output", str(tmp_path / "r.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), trials)


def drawn(path: Path) -> bool:
    """A figure, not a picture of a sentence: ink reaches across most of the canvas both ways
    (a title and a line of text leave most rows blank)."""
    with Image.open(path) as im:
        ink = np.asarray(im.convert("L")) < 200
    return ink.any(axis=1).mean() > 0.5 and ink.any(axis=0).mean() > 0.5


def test_report_draws_every_figure_and_names_the_winner(golden):
    out = golden.cli("report", "first").output
    listed = [golden.exp / line.strip() for line in out.splitlines() if line.startswith("  ")]
    md = (golden.exp / "report.md").read_text()
    drawn_figures = {p.stem for p in (golden.exp / "report").glob("*.png")}
    assert STANDARD_FIGURES <= drawn_figures, drawn_figures
    task_figures = sorted((golden.exp / "test_report").glob("*.png"))
    assert set(listed) == {*(golden.exp / "report").glob("*.png"), *task_figures}
    for path in listed:
        assert drawn(path), f"{path.name} is not a figure"
        assert f"]({path.relative_to(golden.exp)})" in md, f"report.md does not show {path.name}"
    best = golden.final()["best"]["trial_id"]
    assert f"## Best configuration\n\nTrial `{best}`" in md


def test_best_then_a_sweep_that_enqueues_it_then_compare(golden, data_dir, tmp_path):
    best_file = tmp_path / "best.yaml"
    golden.cli("best", "first", "-o", str(best_file))
    fixed = yaml.safe_load(best_file.read_text())["params"]
    final = golden.final()
    assert fixed == {**fixed, **final["best"]["config"]}
    second = runner.invoke(app, ["sweep", golden.task, *golden.task_module, "--data-dir", str(data_dir), *SIZE,
                                 "--num-samples", "1", "--max-epochs", "1", "--enqueue", str(best_file),
                                 "--storage", str(golden.storage), "--name", "second"])
    assert second.exit_code == 0, second.output
    [(trial_id, state)] = read_tune_states(golden.storage / "second").items()  # its first and only trial
    searched = yaml.safe_load((golden.exp / "space.yaml").read_text())["initial"][0]
    assert {k: state["config"][k] for k in searched} == {k: fixed[k] for k in searched}
    shown = golden.cli("compare", "first", "second").output
    assert _cells(shown.splitlines()[0]) == ["name", "first", "second"], shown


def test_resume_of_a_finished_sweep_has_nothing_to_do(golden):
    before = (golden.exp / "final.json").stat().st_mtime_ns
    out = golden.cli("resume", "first", task_module=True).output
    assert "nothing to resume" in out
    assert (golden.exp / "final.json").stat().st_mtime_ns == before  # the test split was not used again


def test_tensorboard_lists_every_trial_and_stops_cleanly(golden):
    # Ctrl-C in a terminal reaches a process whose SIGINT is the default; a CI started as a
    # background job (`make test &`) hands every child an ignored SIGINT, which Python keeps
    proc = subprocess.Popen([sys.executable, "-m", "dlb_tune.cli", "tensorboard", "first", "--storage",
                             str(golden.storage), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    url, seen = None, []
    try:
        deadline = time.monotonic() + 300  # a ceiling for a hang; the URL line ends the wait
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            if seen[-1].startswith("TensorBoard on "):
                url = seen[-1].split()[2]
        assert url, f"no URL printed (exit code {proc.poll()}): {''.join(seen)}"
        runs = board_client.get_json(url + "data/runs")
        trials = pd.read_parquet(golden.exp / "results.parquet")["trial_id"]
        assert {f"trial_{t}" for t in trials} <= set(runs), runs
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    assert code == 0, "".join(seen)
