"""``python -m bench autoscale``: a sweep on a local autoscaling cluster that starts with 0 workers.

The cluster is Ray's fake multi-node provider (``dlb_tune.testing.AutoscalingCluster``): a head with 0 CPUs
and up to 3 worker nodes of ``{CPU: 1, GPU: 1}`` (the GPU only reserved). One ``dlb-tune sweep
emotion --gpus 2 --max-failures 1`` runs on it (the sweep of tests/test_autoscaling.py's kill
test); as soon as a trial has a checkpoint and half of its epochs to go, its node is killed.
Reported: seconds from launch to the first trial start, nodes joined (and those that ran trials),
trials per node, and what the killed node cost (seconds until its trial reported again, epochs
re-run, trials retried).
JSON in ``bench/results/autoscale.json``.

    python -m bench autoscale [--samples 3] [--epochs 6]   # ~1-2 minutes on 2 CPUs
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import DataDir, benchmark
from bench.common import RESULTS, ROOT, command_line, default_data_dir, loadavg, say


def watch_lines(proc: subprocess.Popen, t0: float, seen: dict[str, list[float]], log: list[str]) -> None:
    """Seconds after launch at which the sweep printed a trial start or a joined node."""
    for line in proc.stdout:
        log.append(line)
        for key, marker in (("start", "  start "), ("joined", "node joined")):
            if marker in line:
                seen.setdefault(key, []).append(round(time.time() - t0, 1))


def run(data_dir: str, samples: int, epochs: int) -> dict:
    from dlb_tune.testing import AutoscalingCluster  # Ray's autoscaler: imported when it runs

    out = Path(tempfile.mkdtemp(prefix="dlb-autoscale-"))
    exp = out / "auto"
    cluster = AutoscalingCluster(idle_timeout_minutes=1).start()
    try:
        cmd = [sys.executable, "-m", "dlb_tune.cli", "sweep", "emotion", "--data-dir", data_dir, "--smoke",
               "--limit", "2000", "--set", "embedding=random", "--set", "hidden_size=32", "--sampler", "random", "--scheduler", "fifo",
               "--num-samples", str(samples), "--max-epochs", str(epochs), "--gpus", "2",
               "--max-failures", "1", "--address", cluster.address, "--storage", str(out), "--name", "auto"]
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=cluster.env())
        seen: dict[str, list[float]] = {}
        log: list[str] = []
        reader = threading.Thread(target=watch_lines, args=(proc, t0, seen, log), daemon=True)
        reader.start()
        kill: dict = {}
        try:
            kill_one_node(cluster, proc, exp, t0, epochs, kill)
            proc.wait(timeout=900)
        except KeyboardInterrupt:  # out of time (timeout -s INT): the figures so far are still kept
            kill["interrupted_at_s"] = round(time.time() - t0, 1)
            proc.wait(timeout=120)  # the sweep got the signal too, and stops keeping what finished
        reader.join(timeout=10)
        return summarize(exp, seen, kill, proc.returncode, "".join(log))
    finally:
        cluster.stop()
        shutil.rmtree(out, ignore_errors=True)  # the figures are read; the sweep's folder is scratch


def kill_one_node(cluster: AutoscalingCluster, proc: subprocess.Popen, exp: Path, t0: float, epochs: int,
                  kill: dict) -> None:
    """Kill the node of a trial that has a checkpoint and half its epochs to go; note when the trial
    reports again elsewhere."""
    from dlb_tune.testing import history, wait_for_victim, wait_until

    victim = wait_for_victim(exp, epochs, ceiling_s=600, give_up=lambda: proc.poll() is not None)
    if victim is None:
        return
    trial, node = victim
    kill.update({"trial": trial, "node": node, "at_s": round(time.time() - t0, 1)})
    cluster.kill_node(node)
    moved = lambda: any(n != node for _, n in history(exp)[trial])  # noqa: E731
    if wait_until(moved, ceiling_s=600, give_up=lambda: proc.poll() is not None):
        kill["seconds_until_it_reported_again"] = round(time.time() - t0 - kill["at_s"], 1)


def kill_cost(exp: Path, kill: dict) -> None:
    """Epochs the killed trial reported on its node, and the first it reported elsewhere (read at
    the end: at the kill, the driver's log may lag the trial by an epoch)."""
    from dlb_tune.testing import epochs_around, history

    before, after = epochs_around(history(exp).get(kill.get("trial"), []), kill["node"])
    if before and after:
        kill.update({"epochs_before": max(before), "first_epoch_after": after[0],
                     "epochs_rerun": max(before) - (after[0] - 1)})


def summarize(exp: Path, seen: dict, kill: dict, returncode: int, log: str) -> dict:
    from dlb_tune.testing import history

    per_node: dict[str, set[str]] = {}
    retried = 0
    for trial, h in history(exp).items():
        for _, node in h:
            per_node.setdefault(node, set()).add(trial)
        retried += len({n for _, n in h}) > 1
    if kill.get("node"):
        kill_cost(exp, kill)
    return {"returncode": returncode, "first_trial_start_s": (seen.get("start") or [None])[0],
            "node_joins_s": seen.get("joined", []), "nodes_joined": len(seen.get("joined", [])),
            "nodes_with_trials": len(per_node),
            "trials_per_node": {n[-12:]: len(t) for n, t in sorted(per_node.items())},
            "trials_retried": retried, "kill": kill, "log_tail": log[-4000:]}


@benchmark("autoscale")
def autoscale(
    data_dir: DataDir = None,
    samples: Annotated[int, typer.Option(help="Trials of the sweep.")] = 3,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = 6,
) -> None:
    """A sweep on a local autoscaling cluster from 0 workers, one node killed -> bench/results/autoscale.json."""
    t0, load0 = time.time(), loadavg()
    record = run(data_dir or default_data_dir(), samples, epochs)
    record.update({"command": command_line(), "wall_s": round(time.time() - t0, 1),
                   "loadavg_start": load0, "loadavg_end": loadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
    (RESULTS / "autoscale.json").write_text(json.dumps(record, indent=2))
    shown = {k: v for k, v in record.items() if k != "log_tail"}
    print(json.dumps(shown, indent=2))
    say(f"wrote {RESULTS / 'autoscale.json'}")
