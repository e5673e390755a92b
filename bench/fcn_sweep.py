"""Benchmark: the default ``fcn`` sweep (search_spaces/fcn.yaml) on 2 CPUs.

Runs the sweep as ``dlb-tune sweep fcn --cpus 2`` would and writes the best trial (selected on
validation, tested once), its parameter count, the trial counts and the wall time to
``bench/results/fcn.json``. The issue's target: 98% MNIST test accuracy.

    python bench/fcn_sweep.py [--data-dir ../shared/data] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--storage", default="/tmp/dlb-tune-bench")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from dlb_tune.results import read_results
    from dlb_tune.sweep import SweepOptions, run_sweep

    opts = SweepOptions(task="fcn", data_dir=args.data_dir, storage=args.storage, cpus=2, seed=args.seed,
                        name=f"fcn-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    started = dt.datetime.now().astimezone()
    t0 = time.time()
    final = run_sweep(opts)
    wall = time.time() - t0
    df, _ = read_results(final["experiment_dir"])
    best, test = final.get("best") or {}, final.get("test") or {}
    params = df.loc[df["trial_id"] == best.get("trial_id"), "params"] if "params" in df else []
    report = {
        "command": " ".join(["python", "bench/fcn_sweep.py", *sys.argv[1:]]),
        "date": started.isoformat(timespec="seconds"),
        "wall_s": round(wall, 1),  # data loading, Ray start-up, the sweep and the test evaluation
        "sweep_wall_s": final["wall_s"],
        "trials": final["trials"],
        "best_overall": {"trial_id": best.get("trial_id"), "epoch": best.get("epoch"), "val_acc": best.get("val_acc"),
                         "test_acc": test.get("test_acc"), "params": int(params.iloc[0]) if len(params) else None,
                         "config": best.get("config")},
        "target": final.get("target"),
        "target_met": final.get("target_met"),
        "experiment_dir": final["experiment_dir"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fcn.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: report[k] for k in ("wall_s", "trials", "best_overall", "target_met")}, indent=2, default=str))


if __name__ == "__main__":
    main()
