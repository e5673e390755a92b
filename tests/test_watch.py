"""Watching a sweep while it runs: `status`, `report` and `tensorboard` on a real `dlb-tune sweep`
in its own process, the progress lines it prints, and the Optuna journal it keeps (after the
sweep is interrupted and after it is resumed).

The sweep (``fcn_counted``, one trial at a time, FIFO) holds each trial before its 2nd epoch
until the test lets it through (the task's ``gate`` file), so "a trial is running at epoch 1"
is a state the test waits for, not a moment it hopes to catch.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from browser import browser, rendered_text
from dlb_tune.asha import SweepState
from dlb_tune.cli import app
from dlb_tune.experiment import JOURNAL_FILE, read_live
from dlb_tune.progress import summary_line
from dlb_tune.show import fit, short_config, width
from dlb_tune.space import load_space
from test_interrupts import CEILING_S, CLI, ROOT, Driver
from dlb_tune.testing import COUNTED_TASK, register_counted_task

runner = CliRunner()
TRIALS, EPOCHS = 3, 3

SPACE = f"""
task: {COUNTED_TASK}
metric: val_acc
mode: max
max_epochs: {EPOCHS}
num_samples: {TRIALS}
params:
  lr: {{loguniform: [0.01, 0.2]}}
  activation: {{choice: [relu, tanh]}}
  hidden_size: 32
  record: RECORD
  gate: GATE
"""


def epochs_on_disk(exp: Path) -> dict[str, int]:
    """trial id -> rows in its progress.csv (epochs written so far)."""
    out = {}
    for csv in exp.glob("trial_*/progress.csv"):
        lines = [ln for ln in csv.read_text().splitlines() if ln.strip()]
        out[csv.parent.name.removeprefix("trial_")] = max(0, len(lines) - 1)
    return out


def first_started(exp: Path) -> list[str]:
    """Trial ids in the order they started."""
    return [p.parent.name.removeprefix("trial_") for p in sorted(exp.glob("trial_*/params.json"),
                                                                    key=lambda p: p.stat().st_mtime)]


def journal_trials(exp: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(exp / JOURNAL_FILE)))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def start_tensorboard(storage: Path, name: str) -> tuple[subprocess.Popen, str, list[str]]:
    """`dlb-tune tensorboard` in its own process; its URL and the lines it printed before it."""
    proc = subprocess.Popen([*CLI, "tensorboard", name, "--storage", str(storage), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + CEILING_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        if seen[-1].startswith("TensorBoard on "):
            return proc, seen[-1].split()[2], seen
    proc.kill()
    pytest.fail(f"`dlb-tune tensorboard` printed no URL (exit {proc.poll()}):\n{''.join(seen)}")


def board_runs(url: str, want: str) -> list[str]:
    """TensorBoard's runs, once one of them names ``want``: it rescans its logdir every 5 s, so a
    trial that started after it appears there when TensorBoard watches the whole experiment folder."""
    runs: list[str] = []
    deadline = time.monotonic() + CEILING_S
    while time.monotonic() < deadline and not any(want in run for run in runs):
        time.sleep(1)
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/data/runs", timeout=30) as r:
                runs = json.load(r)
        except OSError:
            continue  # busy: ask again
    return runs


def time_series_page(url: str, trial: str, root: Path) -> str | None:
    """The text of TensorBoard's Time Series page in headless chromium, once it lists ``trial``
    (None without chromium and chromedriver: the browser test then skips, or fails in CI, through
    its fixtures)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        return None
    with browser(chromium, chromedriver, root / "profile") as driver:
        return rendered_text(driver, url + "#timeseries", [f"trial_{trial}"], timeout_s=300)


@pytest.fixture(scope="module")
def live(tmp_path_factory, data_dir):
    """The sweep, read while its first trial is held at epoch 1; then TensorBoard, a second trial,
    Ctrl-C, and `dlb-tune resume`. What each step saw, for the tests below."""
    register_counted_task()  # `status` and `report` below run in this process
    root = tmp_path_factory.mktemp("watch")
    gate, record = root / "gate", root / "calls.jsonl"
    gate.write_text("0")
    (root / "space.yaml").write_text(SPACE.replace("RECORD", json.dumps(str(record))).replace("GATE", json.dumps(str(gate))))
    storage, exp = root / "runs", root / "runs" / "w"
    common = ["--storage", str(storage), "--data-dir", str(data_dir)]
    sweep = Driver(["sweep", COUNTED_TASK, "--space", str(root / "space.yaml"), "--name", "w", "--limit", "1000",
                    "--scheduler", "fifo", "--cpus", "1", "--cpus-per-trial", "1", "--seed", "1", *common],
                   root / "sweep.log")
    seen: dict = {"exp": exp, "storage": storage}
    sweep.wait_for(lambda: len(epochs_on_disk(exp)) == 1 and min(epochs_on_disk(exp).values()) >= 1,
                   "the first trial's first epoch on disk")
    seen["first"] = first_started(exp)[0]
    seen["status"] = runner.invoke(app, ["status", "w", "--storage", str(storage)])
    seen["report"] = runner.invoke(app, ["report", "w", "--storage", str(storage)])
    seen["report_md"] = (exp / "report.md").read_text() if (exp / "report.md").exists() else ""
    tb, url, seen["tensorboard"] = start_tensorboard(storage, "w")
    try:
        gate.write_text("1")  # the first trial goes on; the second stops at the gate after its epoch 1
        sweep.wait_for(lambda: len(epochs_on_disk(exp)) == 2 and min(epochs_on_disk(exp).values()) >= 1,
                       "a second trial's first epoch on disk")
        seen["second"] = next(t for t in first_started(exp) if t != seen["first"])
        seen["board_runs"] = board_runs(url, f"trial_{seen['second']}")
        seen["page"] = time_series_page(url, seen["second"], root)
    finally:
        tb.send_signal(signal.SIGTERM)
        tb.wait(timeout=120)
    seen["sweep_code"] = sweep.finish(signal.SIGINT)  # the second trial is still held at its gate
    seen["sweep_output"] = sweep.output
    seen["journal_after_sweep"] = [(t.number, t.state.name) for t in journal_trials(exp, "w")]
    gate.write_text("99")
    resume = Driver(["resume", "w", *common], root / "resume.log")
    # `status --watch` from another terminal while the resumed sweep runs, until it has ended
    resume.wait_for(lambda: not read_live(exp).get("ended"), "the resumed sweep's live.json")
    watch = subprocess.Popen([*CLI, "status", "w", "--storage", str(storage), "--watch", "--every", "1"], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    seen["resume_code"], seen["resume_output"] = resume.finish(), resume.output
    seen["watch_output"] = watch.communicate(timeout=CEILING_S)[0]
    seen["journal_after_resume"] = journal_trials(exp, "w")
    seen["status_after"] = runner.invoke(app, ["status", "w", "--storage", str(storage)])
    return seen


def test_status_while_the_sweep_runs(live):
    out = live["status"]
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith(f"w ({COUNTED_TASK}): running: 0 of {TRIALS} trials finished"), out.output
    assert lines[-1].startswith("Ray dashboard http://127.0.0.1:")
    assert lines[1] == f"trials: 1 running, {TRIALS - 1} pending, 0 completed, 0 stopped early, 0 errored"
    assert lines[2].startswith(f"best so far: trial {live['first']}, val_acc 0.") and lines[2].endswith("(epoch 1)")
    assert lines[3].startswith("  config: lr=") and "hidden_size" not in lines[3]  # constants left out
    assert lines[4].startswith(f"  running {live['first']}: epoch 1/{EPOCHS}, val_acc 0.")
    assert lines[5].startswith("elapsed ") and "time left about " in lines[5]
    assert all(len(line) <= width() for line in lines)  # $COLUMNS, else 80 without a terminal


def test_report_while_the_sweep_runs(live):
    out = live["report"]
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"running: 0 of {TRIALS} trials finished")
    assert f"**running: 0 of {TRIALS} trials finished**" in live["report_md"].splitlines()[2]
    assert "(interrupted sweep?)" not in live["report_md"]


def test_tensorboard_on_a_running_sweep_says_so_and_shows_later_trials(live):
    assert any(line.startswith(f"running: 0 of {TRIALS} trials finished") for line in live["tensorboard"])
    runs = live["board_runs"]
    assert any(f"trial_{live['second']}" in run for run in runs), runs  # started after TensorBoard


def test_tensorboard_page_in_a_browser_lists_a_trial_that_started_after_it(live, chromium, chromedriver):
    page = live["page"]
    assert page is not None
    assert f"trial_{live['first']}" in page and f"trial_{live['second']}" in page, page[-2000:]


def test_sweep_prints_where_to_watch_and_progress_lines_that_fit(live):
    out = live["sweep_output"]
    assert live["sweep_code"] == 130, out[-3000:]
    assert "Ray dashboard: http://127.0.0.1:" in out
    assert f"watch it: dlb-tune status w --storage {live['storage']} --watch" in out
    assert f"dlb-tune tensorboard w --storage {live['storage']}" in out
    progress = [ln for ln in out.splitlines() if ln.startswith("[")]
    epoch_lines = [ln for ln in progress if f" {live['first']}  epoch " in ln]
    assert len(epoch_lines) == EPOCHS, progress
    assert epoch_lines[0].split("]")[0].endswith(f" 0/{TRIALS}") and " best 0." in epoch_lines[0]
    assert any(ln.split("]")[0].endswith(f" 1/{TRIALS}") for ln in progress if f" {live['second']}  " in ln)
    assert f"next: dlb-tune report w --storage {live['storage']}; dlb-tune best w" in out
    assert max(len(ln) for ln in progress) <= width()  # piped: $COLUMNS, else 80


def test_summary_says_the_whole_commands_time_and_its_parts(live):
    out = live["resume_output"]
    assert live["resume_code"] == 0, out[-3000:]
    head = next(ln for ln in out.splitlines() if ln.startswith(f"== {COUNTED_TASK} sweep 'w' finished in "))
    final = json.loads((live["exp"] / "final.json").read_text())
    t = final["timings"]
    assert set(t) == {"data_s", "ray_start_s", "trials_s", "test_s"} and t["ray_start_s"] > 0
    assert final["command_s"] > t["data_s"] + t["ray_start_s"] + t["trials_s"] + t["test_s"] - 1
    assert f"finished in {final['command_s']:.0f}s (data " in head and "Ray start-up" in head


def test_optuna_journal_after_the_sweep_and_after_resume(live):
    # Interrupted: the first trial told COMPLETE, the held one still RUNNING (resume continues it).
    assert live["journal_after_sweep"] == [(0, "COMPLETE"), (1, "RUNNING")]
    trials = live["journal_after_resume"]
    df = pd.read_parquet(live["exp"] / "results.parquet")
    assert [t.state.name for t in trials] == ["COMPLETE"] * TRIALS == ["COMPLETE"] * len(df)
    final = json.loads((live["exp"] / "final.json").read_text())
    # Optuna saw the last epoch of each trial (FIFO: all completed); the winner has the best best-epoch.
    assert sorted(t.values[0] for t in trials) == sorted(df["val_acc"])
    assert final["best"]["config"]["lr"] in [t.params["lr"] for t in trials]


def test_status_after_the_end(live):
    out = live["status_after"]
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"w ({COUNTED_TASK}): finished in ")
    assert f"trials: 0 running, 0 pending, {TRIALS} completed" in out.output


def test_watch_ends_with_the_block_status_prints_after_the_end(live):
    """Its last frame is read after the sweep has ended: not one read while final.json was being
    written (which said "finished in 0s")."""
    frames = re.split(r"^-- \d\d:\d\d:\d\d --\n", live["watch_output"], flags=re.M)
    assert frames[-1] == live["status_after"].output, live["watch_output"]


def test_progress_lines_fit_the_width_with_the_searched_parameters_only():
    spec = load_space(ROOT / "search_spaces" / "emotion.yaml")
    config = {"max_len": 64, "min_freq": 2, **spec.initial[0]}  # constants beside the searched values
    shown = short_config(config, spec.searched())
    assert shown.startswith("cell=lstm bidirectional=False") and "max_len" not in shown and "min_freq" not in shown
    line = fit(f"[ 1m05s 3/40] 7a2c_00004  start {shown}", 80)
    assert len(line) <= 80 and line.endswith("...") and f" {line[:-3].split()[-1]} " in shown + " "  # cut at a space
    counts = {"running": 2, "pending": 30, "completed": 3, "stopped_early": 4, "errored": 1}
    summary = summary_line(spec, 3725.0, counts, 0.6512, 300.0)
    assert summary == "[ 1h02m 8/40] 2 running, 30 pending, 8 done: 4 stopped early, 1 errored; best 0.6512; ~5m00s left"
    assert summary_line(spec, 5.0, counts, None, float("nan")).endswith("best none yet")


def test_time_left_of_a_constructed_sweep_in_progress_and_status():
    """Both readers hand the time left the sweep's own state (FIFO, 4 trials of 3 epochs at 10 s,
    2 slots: one finished, one 1 epoch in, two pending: 50 s by hand, test_plan.py)."""
    from types import SimpleNamespace

    from dlb_tune.progress import Progress
    from dlb_tune.status import sweep_state

    spec = dataclasses.replace(load_space(ROOT / "search_spaces" / "emotion.yaml"), num_samples=4, max_epochs=3)
    lines = []
    progress = Progress(spec, lines.append, concurrency=2, scheduler="fifo")
    done, running = (SimpleNamespace(trial_id=i, config={}, status=s, last_result={"epoch": 3})
                     for i, s in (("a", "TERMINATED"), ("b", "RUNNING")))
    for trial, epochs in ((done, 3), (running, 1)):
        for epoch in range(1, epochs + 1):
            progress.on_trial_result(0, [], trial, {spec.metric: 0.5, "epoch": epoch, "time_this_iter_s": 10.0})
    progress.on_trial_complete(0, [], done)
    progress.summary([done, running])
    assert lines[-1].endswith("; ~50s left"), lines[-1]
    table = pd.DataFrame({"status": ["completed", "running", "pending"], "epochs": [3, 1, None]})
    exp = SimpleNamespace(trials=table, spec=spec)
    assert sweep_state(exp) == SweepState(finished=[3], running=[1], pending=2)
