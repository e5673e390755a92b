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


def _reported_nodes(exp: Path, min_epoch: int) -> dict[str, str]:
    """trial folder -> node_id of trials that have reported at least ``min_epoch`` epochs."""
    seen = {}
    for result in exp.glob("trial_*/result.json"):
        for line in result.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written right now
            if row.get("epoch", 0) >= min_epoch and row.get("node_id"):
                seen[result.parent.name] = row["node_id"]
    return seen


def nodekill(data_dir: str, out: str) -> dict:
    from ray.cluster_utils import Cluster

    from dlb_tune.sweep import SweepOptions, run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ids = [w.node_id[:12] for w in workers]
    exp = Path(out) / "kill"
    events: dict = {"worker_nodes": ids}

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline:
            nodes = _reported_nodes(exp, min_epoch=2)
            if len(set(nodes.values())) >= 2:  # trials running on both worker nodes
                events["nodes_before_kill"] = sorted(set(nodes.values()))
                cluster.remove_node(workers[1])
                events["killed"] = ids[1]
                return
            time.sleep(0.5)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    opts = SweepOptions(
        task="fcn", data_dir=data_dir, address=cluster.address, storage=out, name="kill",
        num_samples=4, max_epochs=6, search="random", scheduler="fifo", seed=0, limit=20000,
        max_failures=3, overrides=["hidden_size=128", "lr=0.05", "batch_size=64"],
    )
    final = run_sweep(opts, echo=lambda line: print(line, file=sys.stderr))
    thread.join(timeout=1)
    import pandas as pd

    df = pd.read_parquet(exp / "results.parquet")
    cluster.shutdown()
    return {**events, "trials": final["trials"], "statuses": df["status"].tolist(),
            "test_acc": final.get("test", {}).get("test_acc")}


if __name__ == "__main__":
    scenario, data_dir, out = sys.argv[1:4]
    print(json.dumps({"nodekill": nodekill}[scenario](data_dir, out)))
