"""Interrupted sweeps, end to end on a real driver process: SIGTERM, resume, SIGKILL, resume.

README: "Ctrl-C or SIGTERM stops the sweep gracefully: finished trials are kept, unfinished ones
keep their checkpoints, the test split is not touched, and the exit code is 130. `dlb-tune
resume NAME` continues the unfinished trials and never re-runs a finished one. After a crash
(the driver killed outright), `resume` continues from the last saved experiment state."

One sweep of two trials, one at a time, of 8 slowed epochs (0.5 s each), driven through the
dlb-tune CLI with the logging task (``dlb_tune/testing/counting_task.py``), so every train and evaluate
call, in the driver and in the Ray workers, is on record. Waits are on the files the sweep
writes, never on fixed sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from dlb_tune.trainable import trial_seed
from dlb_tune.testing import COUNTED_TASK, read_calls, weights_fingerprint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from dlb_tune.testing import counting_cli; counting_cli()"]
EPOCHS = 8
CEILING_S = 600  # generous: a loaded 2-core machine can take minutes to start Ray (bench/results/ci_timing.md)

SPACE = f"""
task: {COUNTED_TASK}
metric: val_acc
mode: max
target: 0.8
max_epochs: {EPOCHS}
num_samples: 2
params:
  lr: 0.05
  hidden_size: 32
  epoch_sleep_s: 0.5
  record: RECORD
"""


def reported_epochs(exp: Path) -> dict[str, int]:
    """trial id -> the last epoch in its result.json."""
    out = {}
    for result in exp.glob("trial_*/result.json"):
        epochs = [0]
        for line in result.read_text().splitlines():
            try:
                epochs.append(json.loads(line).get("epoch", 0))
            except json.JSONDecodeError:
                pass  # a line being written right now
        out[result.parent.name.removeprefix("trial_")] = max(epochs)
    return out


# Ray gives its raylet 30 s to register; on a 2-core machine shared with other Ray clusters
# that can run out before anything of ours has started. Then, and only then, start again.
RAY_START_TIMEOUT = "The current node timed out during startup"


class Driver:
    """One ``dlb-tune`` process (sweep or resume), its output in a file."""

    def __init__(self, args: list[str], log: Path):
        if os.environ.get("DLB_TUNE_MUTATION"):  # as ray_local (conftest.py): no Ray in mutation runs
            pytest.skip("mutation run: the driver's Ray workers would run the unmutated code")
        self.args, self.log, self.restarted = args, log, False
        self._start()

    def _start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(CLI + self.args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)

    def _restarted_after_ray_start_timeout(self) -> bool:
        if self.restarted or self.proc.returncode == 0 or RAY_START_TIMEOUT not in self.output:
            return False
        self.restarted = True
        self._start()
        return True

    def wait_for(self, condition, what: str) -> None:
        deadline = time.time() + CEILING_S
        while not condition():
            if self.proc.poll() is not None and not self._restarted_after_ray_start_timeout():
                pytest.fail(f"the driver ended (exit {self.proc.returncode}) before {what}:\n{self.output[-3000:]}")
            if time.time() > deadline:
                self.proc.kill()
                pytest.fail(f"no {what} after {CEILING_S}s:\n{self.output[-3000:]}")
            time.sleep(0.2)

    def finish(self, sig: int | None = None) -> int:
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=CEILING_S)
            if sig is None and self._restarted_after_ray_start_timeout():
                code = self.proc.wait(timeout=CEILING_S)
            return code
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the driver did not end:\n{self.output[-3000:]}")

    @property
    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, data_dir):
    """The sweep, SIGTERM once the first trial is past epoch 2: (folders, driver, results)."""
    root = tmp_path_factory.mktemp("interrupts")
    record = root / "calls.jsonl"
    (root / "space.yaml").write_text(SPACE.replace("RECORD", json.dumps(str(record))))
    storage, exp = root / "runs", root / "runs" / "i"
    sweep = Driver(["sweep", COUNTED_TASK, "--data-dir", str(data_dir), "--space", str(root / "space.yaml"),
                    "--storage", str(storage), "--name", "i", "--limit", "2000", "--sampler", "random",
                    "--scheduler", "fifo", "--cpus", "2", "--cpus-per-trial", "2"], root / "sweep.log")
    sweep.wait_for(lambda: max(reported_epochs(exp).values(), default=0) >= 2, "a trial at epoch 2")
    code = sweep.finish(signal.SIGTERM)
    if not (exp / "results.parquet").exists():
        pytest.fail(f"after SIGTERM the driver ended (exit {code}) without writing results:\n{sweep.output[-3000:]}")
    return {"root": root, "storage": storage, "exp": exp, "record": record, "code": code, "driver": sweep,
            "df": pd.read_parquet(exp / "results.parquet").set_index("trial_id"),
            "final": json.loads((exp / "final.json").read_text())}


def test_sigterm_exits_130_and_keeps_every_unfinished_trial_incomplete(interrupted):
    assert interrupted["code"] == 130, interrupted["driver"].output[-3000:]
    df = interrupted["df"]
    # one trial at a time (--cpus-per-trial 2 of 2): the second is not created before the first ends
    assert len(df) == 1 and (df["status"] == "incomplete").all(), df[["status", "epochs"]]
    assert 2 <= df["epochs"].iloc[0] < EPOCHS  # stopped mid-trial: still incomplete
    assert interrupted["final"]["interrupted"] is True
    assert "dlb-tune resume i" in " ".join(interrupted["driver"].output.split())  # wrapped to the terminal


def test_an_interrupted_sweep_never_touches_the_test_split(interrupted):
    assert "test" not in interrupted["final"] and "best" not in interrupted["final"]
    splits = {c.get("split") for c in read_calls(interrupted["record"]) if c["call"] == "evaluate"}
    assert splits == {"val"}


def test_resume_after_sigterm_and_after_sigkill_finishes_and_loses_nothing(interrupted, data_dir):
    exp, storage, record = interrupted["exp"], interrupted["storage"], interrupted["record"]
    [first] = interrupted["df"].index[interrupted["df"]["epochs"] > 0]
    resume_args = ["resume", "i", "--storage", str(storage)]

    # 1. resume; once the first trial has finished and the second is under way, kill the driver outright
    resumed = Driver(resume_args, interrupted["root"] / "resume1.log")
    resumed.wait_for(lambda: reported_epochs(exp).get(first) == EPOCHS
                     and max((e for t, e in reported_epochs(exp).items() if t != first), default=0) >= 2,
                     "the first trial finished and the second at epoch 2")
    resumed.finish(signal.SIGKILL)
    progress = exp / f"trial_{first}" / "progress.csv"
    assert pd.read_csv(progress)["epoch"].tolist() == list(range(1, EPOCHS + 1))  # resumed: no epoch skipped or repeated
    finished_stamp, calls_before = progress.stat().st_mtime, len(read_calls(record))

    # 2. resume again: the finished trial is not re-run, the other one completes, then one test evaluation
    last = Driver(resume_args, interrupted["root"] / "resume2.log")
    assert last.finish() == 0, last.output[-3000:]
    df = pd.read_parquet(exp / "results.parquet").set_index("trial_id")
    assert (df["status"] == "completed").all() and (df["epochs"] == EPOCHS).all(), df[["status", "epochs"]]
    assert progress.stat().st_mtime == finished_stamp
    later = read_calls(record)[calls_before:]
    assert not [c for c in later if c["seed"] == trial_seed(0, first)], "the finished trial was re-run"
    for trial in df.index:  # after the kill the second trial restarts from a saved checkpoint: no epoch missing
        epochs = pd.read_csv(exp / f"trial_{trial}" / "progress.csv")["epoch"].tolist()
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1)), (trial, epochs)
    tests = [c for c in read_calls(record) if c["call"] == "evaluate" and c["split"] == "test"]
    assert len(tests) == 1 and tests[0]["pid"] == last.proc.pid
    final = json.loads((exp / "final.json").read_text())
    state = torch.load(Path(final["best"]["checkpoint"]) / "state.pt", weights_only=False)
    assert tests[0]["weights"] == weights_fingerprint(state["task"]["params"])
