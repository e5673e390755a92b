"""Multi-node scenarios on a simulated Ray cluster (head + 2 worker nodes on this machine).

Run as a script in its own process (one Ray cluster per process); prints one JSON line.
    python tests/cluster_scenarios.py nodekill DATA_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable


def result_rows(exp: Path) -> dict[str, list[dict]]:
    """trial folder -> the rows Tune has logged to its result.json so far (as the driver saw them)."""
    rows: dict[str, list[dict]] = {}
    for result in exp.glob("trial_*/result.json"):
        for line in result.read_text().splitlines():
            try:
                rows.setdefault(result.parent.name, []).append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    return rows


def history(exp: Path) -> dict[str, list[tuple[int, str]]]:
    """trial folder -> [(epoch, node), ...] as the driver logged them."""
    return {t: [(r["epoch"], r["node_id"]) for r in rows if r.get("node_id")] for t, rows in result_rows(exp).items()}


def epochs_around(trial_history: list[tuple[int, str]], node: str) -> tuple[list[int], list[int]]:
    """The epochs a trial reported on ``node`` (killed) and those it reported elsewhere after."""
    return [e for e, n in trial_history if n == node], [e for e, n in trial_history if n != node]


def wait_until(condition: Callable[[], bool], ceiling_s: float,
               give_up: Callable[[], bool] = lambda: False) -> bool:
    """Poll ``condition`` until it holds (True), ``give_up`` holds or the ceiling passes (False).
    The ceiling only catches a hang: it paces nothing."""
    deadline = time.monotonic() + ceiling_s
    while not condition():
        if give_up() or time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def checkpointed_early(exp: Path, epochs: int) -> tuple[str, str] | None:
    """(trial, node) of a trial with a checkpoint and two thirds of its epochs still to run: a node
    killed now cuts that trial short (at any load), and it has something to resume from."""
    for trial, rows in sorted(result_rows(exp).items()):
        if rows and rows[-1].get("node_id") and rows[-1]["epoch"] <= epochs // 3 \
                and any((exp / trial).glob("checkpoint_*")):
            return trial, rows[-1]["node_id"]
    return None


def wait_for_victim(exp: Path, epochs: int, ceiling_s: float, give_up: Callable[[], bool]) -> tuple[str, str] | None:
    """The first (trial, node) ``checkpointed_early`` finds, polled until the ceiling or ``give_up``."""
    found: dict[str, tuple[str, str] | None] = {}

    def victim() -> bool:
        found["victim"] = checkpointed_early(exp, epochs)
        return found["victim"] is not None

    wait_until(victim, ceiling_s, give_up)
    return found.get("victim")


def _reported_nodes(exp: Path, min_epoch: int) -> dict[str, str]:
    """trial folder -> node_id of trials that have reported at least ``min_epoch`` epochs."""
    return {trial: row["node_id"] for trial, rows in result_rows(exp).items() for row in rows
            if row.get("epoch", 0) >= min_epoch and row.get("node_id")}


def nodekill(data_dir: str, out: str) -> dict:
    from ray.cluster_utils import Cluster

    from dlb_tune.sweep import SweepOptions, run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ids = [w.node_id for w in workers]
    exp = Path(out) / "kill"
    events: dict = {"worker_nodes": ids}

    sweep_over = threading.Event()

    def killer():
        """Kill a worker node once trials have reported twice on both; a sweep that ends first
        leaves no "killed" in the output, and the test says so."""
        def on_both_nodes() -> bool:
            return len(set(_reported_nodes(exp, min_epoch=2).values())) >= 2

        # the sweep's end, not a clock, ends the wait; the ceiling only catches a hang
        if not wait_until(on_both_nodes, ceiling_s=3600, give_up=sweep_over.is_set):
            return
        events["nodes_before_kill"] = sorted(set(_reported_nodes(exp, min_epoch=2).values()))
        cluster.remove_node(workers[1])
        events["killed"] = ids[1]

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    opts = SweepOptions(
        task="fcn", data_dir=data_dir, address=cluster.address, storage=out, name="kill",
        num_samples=4, max_epochs=6, search="random", scheduler="fifo", seed=0, limit=5000,
        max_failures=3, overrides=["hidden_size=128", "lr=0.05", "batch_size=64"],
    )
    final = run_sweep(opts, echo=lambda line: print(line, file=sys.stderr))
    sweep_over.set()
    thread.join()
    import pandas as pd

    df = pd.read_parquet(exp / "results.parquet")
    cluster.shutdown()
    return {**events, "trials": final["trials"], "statuses": df["status"].tolist(),
            "test_acc": final.get("test", {}).get("test_acc")}


if __name__ == "__main__":
    scenario, data_dir, out = sys.argv[1:4]
    print(json.dumps({"nodekill": nodekill}[scenario](data_dir, out)))
