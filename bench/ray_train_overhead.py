"""``python -m bench ray-train-overhead``: per-trial overhead of a bare loop, a Tune function
trainable and Ray Train with 1 and 2 workers.

The same FCN config and epochs in each shape, one after another in one run, reported as ratios
to the bare loop (machines are noisy; ratios from one run compare fairly).

    python -m bench ray-train-overhead [--epochs 3] [--limit 20000] [--data-dir DIR]
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import DataDir, benchmark
from bench.common import RESULTS, default_data_dir

OVERRIDES = ["activation=relu", "hidden_size=256", "num_layers=1", "lr=0.05", "momentum=0.9",
             "batch_size=64", "weight_decay=0.0"]


def bare_loop(data_dir: Path, epochs: int, limit: int) -> float:
    """The same training in this process: no Ray at all."""
    import torch

    from dlb_tune import TrialContext, get_task

    torch.set_num_threads(1)
    FCN = get_task("fcn")
    cfg = FCN.Config(activation="relu", hidden_size=256, lr=0.05, momentum=0.9, batch_size=64)
    data = FCN.load_data(data_dir, cfg, limit)
    t0 = time.perf_counter()
    task = FCN(cfg, data, TrialContext(max_epochs=epochs, seed=0))
    for epoch in range(epochs):
        task.train_epoch(epoch)
        task.evaluate("val")
    return time.perf_counter() - t0


def through_sweep(data_dir: Path, epochs: int, limit: int, workers: int, storage: Path, ray_train: bool) -> dict:
    from dlb_tune import SweepOptions, run_sweep

    opts = SweepOptions(task="fcn", data_dir=str(data_dir), overrides=OVERRIDES, num_samples=1,
                        max_epochs=epochs, sampler="random", scheduler="fifo", limit=limit,
                        workers_per_trial=workers, ray_train=ray_train, storage=str(storage),
                        name=f"w{workers}-{ray_train}-{time.time():.0f}")
    t0 = time.perf_counter()
    final = run_sweep(opts, echo=lambda _: None)
    return {"wall_s": time.perf_counter() - t0, "sweep_fit_s": final["wall_s"],
            "test_acc": final.get("test", {}).get("test_acc")}


@benchmark("ray-train-overhead")
def ray_train_overhead(
    epochs: Annotated[int, typer.Option(help="Epochs of the one FCN config.")] = 3,
    limit: Annotated[int, typer.Option(help="Examples per split.")] = 20000,
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option(help="Results file.")] = RESULTS / "ray_train_overhead.json",
) -> None:
    """Per-trial overhead: a bare loop, a Tune trainable, Ray Train with 1 and 2 workers."""
    import ray

    data_dir, storage = Path(data_dir or default_data_dir()), Path("/tmp") / "dlb-bench-overhead"
    load0 = os.getloadavg()
    bare = bare_loop(data_dir, epochs, limit)
    ray.init(address="local", num_cpus=2, num_gpus=0, log_to_driver=False, include_dashboard=True, dashboard_host="127.0.0.1")
    shapes = {
        "function trainable": through_sweep(data_dir, epochs, limit, 1, storage, False),
        "TorchTrainer, 1 worker": through_sweep(data_dir, epochs, limit, 1, storage, True),
        "TorchTrainer, 2 workers": through_sweep(data_dir, epochs, limit, 2, storage, True),
    }
    ray.shutdown()
    rows = [{"shape": "bare loop", "fit_s": round(bare, 2), "ratio_to_bare": 1.0}]
    for name, r in shapes.items():
        rows.append({"shape": name, "fit_s": round(r["sweep_fit_s"], 2),
                     "ratio_to_bare": round(r["sweep_fit_s"] / bare, 2),
                     "overhead_s": round(r["sweep_fit_s"] - bare, 1), "test_acc": r["test_acc"]})
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.node()} {os.cpu_count()} CPUs",
              "epochs": epochs, "limit": limit, "loadavg_start": load0, "loadavg_end": os.getloadavg(),
              "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print("| shape | sweep fit s | ratio to bare | overhead s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['fit_s']} | {r['ratio_to_bare']} | {r.get('overhead_s', 0)} |")

