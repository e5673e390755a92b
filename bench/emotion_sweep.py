"""Benchmark: the default ``emotion`` sweep (search_spaces/emotion.yaml) on 2 CPUs.

Runs the sweep as ``dlb-tune sweep emotion --cpus 2`` would and writes the best trial's
validation and test accuracy (selected on validation, tested once), the per-cell leaderboard,
the test confusion matrix and the wall time to ``bench/results/emotion.json``. The issue's bar:
at least 47% test accuracy; the goal is 56% (TF-IDF + logistic regression: 50-51% measured here).

    python bench/emotion_sweep.py [--data-dir ../shared/data] [--seed 0] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GOAL = 0.56  # test accuracy the issue aims for; the space file's target (0.47) is the bar


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--storage", default="/tmp/dlb-tune-bench")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key=value, as the CLI's --set")
    args = p.parse_args()

    from dlb_tune.sweep import SweepOptions, run_sweep

    opts = SweepOptions(task="emotion", data_dir=args.data_dir, storage=args.storage, cpus=2, seed=args.seed,
                        overrides=args.overrides, name=f"emotion-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    t0 = time.time()
    final = run_sweep(opts)
    wall = time.time() - t0
    best, test = final.get("best") or {}, final.get("test") or {}
    report = {
        "command": " ".join(["python", "bench/emotion_sweep.py", *sys.argv[1:]]),
        "wall_s": round(wall, 1),  # data loading, Ray start-up, the sweep and the test evaluation
        "sweep_wall_s": final["wall_s"],
        "trials": final["trials"],
        "best": {"trial_id": best.get("trial_id"), "epoch": best.get("epoch"), "val_acc": best.get("val_acc"),
                 "test_acc": test.get("test_acc"), "test_macro_f1": test.get("test_macro_f1"),
                 "config": best.get("config")},
        "target": final.get("target"),
        "target_met": final.get("target_met"),
        "goal": GOAL,
        "goal_met": bool(test.get("test_acc") is not None and test["test_acc"] >= GOAL),
        "leaderboard": (final.get("task_summary") or {}).get("leaderboard"),
        "test_report": test.get("test_report"),
        "experiment_dir": final["experiment_dir"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "emotion.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: report[k] for k in ("wall_s", "best", "target_met", "goal_met", "leaderboard")},
                     indent=2, default=str))


if __name__ == "__main__":
    main()
