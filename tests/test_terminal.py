"""Every table and line fits the terminal it is printed on, whole values and all.

Each reading command runs as a user runs it (the CLI, a real finished sweep, the shipped space
files, the data folder's catalogue) at 80 and 120 columns (``COLUMNS``, as a terminal or a CI job
sets it): no line is wider, and every name and number the table holds is printed whole on one
line. The sweep's own output (progress lines, the live table, the end-of-run summary) is driven by
a sequence of Tune events and rendered at the same widths.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.fetch import catalog
from dlb_tune.progress import LiveTable, Progress
from dlb_tune.space import default_space_file, load_space
from dlb_tune.summary import summary_lines
from finished_sweep import NAME, finished_sweep

runner = CliRunner()
WIDTHS = (80, 120)
# long enough that no table of two of them fits 80 columns side by side at its natural width
LONG = "fcn-20261207-045300-lr-sweep-with-a-long-name"
MID = "fcn-rerun-2026"  # with LONG: a compare table between 80 and 100 columns wide


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    return finished_sweep(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def storage(finished, tmp_path_factory):
    """The finished sweep under its own name and under long ones."""
    root = tmp_path_factory.mktemp("terminal") / "runs"
    for name in (NAME, LONG, MID):
        shutil.copytree(finished.exp, root / name, ignore=shutil.ignore_patterns("checkpoint_*"))
    return root


def shown(args: list[str], columns: int) -> list[str]:
    result = runner.invoke(app, args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # a path longer than the terminal (another test's task module) stays whole on a line of its own
    too_wide = [ln for ln in lines if len(ln) > columns and " " in ln.strip()]
    assert not too_wide, f"wider than {columns}:\n" + "\n".join(too_wide)
    return lines


def whole(value: str, lines: list[str]) -> None:
    assert any(value in ln for ln in lines), f"{value!r} not whole on one line:\n" + "\n".join(lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_ls_fits_with_names_and_numbers_whole(storage, columns):
    lines = shown(["ls", "--storage", str(storage)], columns)
    final = json.loads((storage / NAME / "final.json").read_text())
    for value in (NAME, LONG, f"{final['best']['val_acc']:.4g}", f"{final['test']['test_acc']:.4g}", "finished"):
        whole(value, lines)
    assert any(ln.split()[:2] == [LONG, "fcn"] for ln in lines), lines  # a row reads across


@pytest.mark.parametrize("columns", WIDTHS)
def test_results_table_fits_with_every_trial_and_value_whole(storage, columns):
    import pandas as pd

    lines = shown(["results", LONG, "--storage", str(storage)], columns)
    df = pd.read_parquet(storage / LONG / "results.parquet")
    for row in df.itertuples():
        whole(row.trial_id, lines)
        whole(f"{row.best_val_acc:.4g}", lines)
    spec = load_space(storage / LONG / "space.yaml")
    for param in spec.searched():
        whole(param, lines)
    final = json.loads((storage / LONG / "final.json").read_text())
    whole(f"{final['experiment_dir']}/results.parquet,", lines)  # a path goes to the next line, never cut


@pytest.mark.parametrize("columns", WIDTHS)
def test_results_all_columns_fit_in_blocks(storage, columns):
    lines = shown(["results", NAME, "--storage", str(storage), "--all"], columns)
    whole("config/hidden_size", lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_compare_fits_with_both_names_whole(storage, columns):
    lines = shown(["compare", NAME, LONG, MID, "--storage", str(storage)], columns)
    for value in (NAME, LONG, MID, "sampler", "time_to_best_val_s", "target_met"):
        whole(value, lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_tasks_fits(columns):
    lines = shown(["tasks"], columns)
    for task in ("fcn", "cnn", "emotion", "vae"):
        spec = load_space(default_space_file(task))
        assert any(ln.split()[:1] == [task] for ln in lines), lines
        whole(str(default_space_file(task)), lines)
        for param in spec.searched():
            whole(param, lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_data_list_fits(data_dir, columns):
    lines = shown(["data", "list", "--data-dir", str(data_dir)], columns)
    for ds in catalog().values():
        assert any(ln.split()[:1] == [ds.name] for ln in lines), lines
        for word in ds.source.split() + ds.license.split():
            whole(word, lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_sweep_summary_wraps_at_spaces(storage, columns):
    import pandas as pd

    final = json.loads((storage / NAME / "final.json").read_text())
    lines = summary_lines(final, pd.read_parquet(storage / NAME / "results.parquet"), columns)
    assert max(len(ln) for ln in lines) <= columns, lines
    for key, value in final["best"]["config"].items():
        shown_value = f"{value:.4g}" if isinstance(value, float) else str(value)
        whole(f"{key}={shown_value}", lines)


def test_sweep_help_shows_every_option_name_whole_at_80_columns():
    out = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "80"}, terminal_width=80).output
    assert "…" not in out, out
    for option in ("--workers-per-trial", "--gpus-per-trial", "--cpus-per-trial", "--ray-train", "--sampler",
                   "--node-timeout", "--max-failures"):
        assert option in out, (option, out)


# --- a running sweep: plain lines, or one table redrawn in place --------------------------------

SPEC = dataclasses.replace(load_space(default_space_file("emotion")), num_samples=3, max_epochs=2)


def trial(tid: str, **config) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={**SPEC.initial[0], **config}, status="RUNNING", last_result={})


def play(progress: Progress) -> list[SimpleNamespace]:
    """Two trials start, report two epochs each, one ends, one errors; a third waits."""
    a, b = trial("7a2c_00000"), trial("7a2c_00001", cell="gru")
    for t in (a, b):
        progress.on_trial_start(0, [a, b], t)
    for epoch in (1, 2):
        progress.on_trial_result(0, [a, b], a, {SPEC.metric: 0.5 + epoch / 10, "epoch": epoch, "time_this_iter_s": 3.0})
    progress.on_trial_result(0, [a, b], b, {SPEC.metric: 0.4321, "epoch": 1, "time_this_iter_s": 3.0})
    a.last_result = {"epoch": 2}
    progress.on_trial_complete(0, [a, b], a)
    b.error_msg = "Traceback ...\nRuntimeError: CUDA out of memory while allocating a long tensor of a long shape"
    progress.on_trial_error(0, [a, b], b)
    return [a, b]


@pytest.mark.parametrize("columns", WIDTHS)
def test_progress_lines_wrap_to_the_terminal_and_keep_every_value(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    lines: list[str] = []
    play(Progress(SPEC, lines.append, live=False))
    assert max(len(ln) for ln in lines) <= columns, lines
    for value in ("7a2c_00000", "0.7000", "cell=gru", "memory", "RuntimeError:"):
        whole(value, lines)
    assert any("start" in ln and "bidirectional=" in ln for ln in lines), lines


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_live_table_redraws_one_row_per_trial(columns):
    from rich.console import Console

    console = Console(record=True, width=columns, file=io.StringIO(), force_terminal=True, color_system=None)
    lines: list[str] = []
    progress = Progress(SPEC, lines.append, live=True)
    progress.live = LiveTable(console)
    play(progress)
    redraws = console.export_text(clear=True)
    assert redraws.count("trial ") >= 6, redraws  # the table drawn again on each event
    progress.close()  # the last frame, left on the terminal
    text = console.export_text()
    frame = text.splitlines()
    assert max(len(ln) for ln in frame) <= columns, text
    assert frame == progress.table_lines(columns)[:len(frame)], text
    rows = {ln.split()[0]: ln.split() for ln in frame if ln.startswith("7a2c")}
    assert rows["7a2c_00000"][1:5] == ["completed", "2/2", "0.7", "0.7"], frame
    assert rows["7a2c_00001"][1:5] == ["errored", "1/2", "0.4321", "0.4321"], frame
    assert frame[0].startswith("[") and "2 done: 0 stopped early, 1 errored; best 0.7000" in " ".join(" ".join(frame).split())
    assert lines == []  # no plain lines beside the table
