"""Benchmark: the default ``cnn`` sweep (search_spaces/cnn.yaml) on 2 CPUs.

Reports the best test accuracy overall (the sweep's winner, selected on validation) and under
100K parameters (the best-validation trial below 100K, its best checkpoint evaluated on test
here), plus the wall time, to ``bench/results/cnn.json``. The goal of the issue: at least 70%
coarse test accuracy with fewer than 100K parameters.

    python bench/cnn_sweep.py [--data-dir ../shared/data] [--objective acc-params]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GOAL = 0.70  # coarse test accuracy under 100K parameters


def best_checkpoint(trial_path: str, metric: str = "val_acc") -> Path:
    """The kept checkpoint of a trial with the best ``metric`` (Ray keeps the best and the latest)."""
    rows = [json.loads(line) for line in (Path(trial_path) / "result.json").read_text().splitlines() if line]
    kept = [r for r in rows if r.get("checkpoint_dir_name") and (Path(trial_path) / r["checkpoint_dir_name"]).is_dir()]
    if not kept:
        raise FileNotFoundError(f"no checkpoint left in {trial_path}")
    return Path(trial_path) / max(kept, key=lambda r: r[metric])["checkpoint_dir_name"]


def test_small_winner(final: dict[str, Any], df, data, spec) -> dict[str, Any] | None:
    """Evaluate the best trial under 100K parameters on test (the sweep only tests its winner)."""
    from dlb_tune.trainable import evaluate_checkpoint

    small = (final.get("task_summary") or {}).get("best_under_100k_params")
    if not small:
        return None
    row = df[df["trial_id"] == small["trial_id"]].iloc[0]
    ckpt = best_checkpoint(row["path"])
    out_dir = Path(final["experiment_dir"]) / "test_report_under_100k"
    test = evaluate_checkpoint(spec.task, small["config"], data, str(ckpt), out_dir, spec.max_epochs)
    return {**small, "test_acc": test["test_acc"], "checkpoint": str(ckpt)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--storage", default="/tmp/dlb-tune-bench")
    p.add_argument("--objective", default=None, help="e.g. acc-params (Pareto search)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from dlb_tune.results import read_results
    from dlb_tune.sweep import SweepOptions, load_data, prepare_spec, run_sweep

    opts = SweepOptions(task="cnn", data_dir=args.data_dir, storage=args.storage, cpus=2,
                        objective=args.objective, seed=args.seed, name=f"cnn-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    t0 = time.time()
    final = run_sweep(opts)
    wall = time.time() - t0
    df, _ = read_results(final["experiment_dir"])
    spec = prepare_spec(opts)
    small = test_small_winner(final, df, load_data(spec, opts), spec)  # data: from the disk cache
    best = final.get("best") or {}
    report = {
        "command": "python bench/cnn_sweep.py" + (f" --objective {args.objective}" if args.objective else ""),
        "wall_s": round(wall, 1),
        "sweep_wall_s": final["wall_s"],
        "trials": final["trials"],
        "interrupted": bool(final.get("interrupted")),
        "best_overall": {"trial_id": best.get("trial_id"), "val_acc": best.get("val_acc"),
                         "test_acc": (final.get("test") or {}).get("test_acc"),
                         "params": _params_of(df, best.get("trial_id")), "config": best.get("config")},
        "best_under_100k": small,
        "goal": f"test_acc >= {GOAL} with < 100K parameters",
        "goal_met": bool(small and small["test_acc"] >= GOAL),
        "experiment_dir": final["experiment_dir"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cnn.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: report[k] for k in ("wall_s", "best_overall", "best_under_100k", "goal_met")},
                     indent=2, default=str))


def _params_of(df, trial_id) -> int | None:
    rows = df[df["trial_id"] == trial_id]
    return int(rows["params"].iloc[0]) if len(rows) and "params" in rows else None


if __name__ == "__main__":
    main()
