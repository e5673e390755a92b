"""``python -m bench gpu`` (or ``bench/gpu_check.sh``): the checks that need a CUDA machine.

1. the tests marked ``gpu`` (tests/test_gpu.py: CUDA device selection, 4 trials packed on one
   GPU, a data-parallel trial on every GPU);
2. per task, a short real sweep with ``--gpus 1 --gpus-per-trial 0.25`` and the same trials (same
   seed, random search: same configs in the same order) on CPUs, side by side: epochs reached,
   seconds per epoch, peak GPU memory per trial.

Sized for one device session of at most 9 minutes: ``--budget`` seconds per sweep (default 30),
and tasks that would start after ``--deadline`` seconds (default 400) are listed as skipped.
Without CUDA it says so in one line and exits 0.

    bench/gpu_check.sh                       # writes into $OUT (a device run's folder) or bench/results/gpu
    python -m bench gpu --tasks fcn,emotion --budget 60 --out /tmp/gpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, ROOT, default_data_dir, say

SAMPLES = 4  # four quarter-GPU trials fill one GPU


def pytest_gpu(out: Path) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    (out / "pytest_gpu.log").write_text(proc.stdout + proc.stderr)
    tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:]
    return {"returncode": proc.returncode, "summary": tail[0] if tail else "", "wall_s": round(time.time() - t0, 1)}


def sweep(task: str, device: str, args, out: Path) -> Path:
    """One short sweep; returns its experiment folder."""
    cpus = max(1, (os.cpu_count() or 4) // SAMPLES)
    resources = (["--gpus", "1", "--gpus-per-trial", str(1 / SAMPLES), "--cpus-per-trial", "1"] if device == "gpu"
                 else ["--gpus", "0", "--cpus-per-trial", str(cpus)])
    name = f"{task}-{device}"
    cmd = [sys.executable, "-m", "dlb_tune.cli", "sweep", task, "--data-dir", args.data_dir, "--num-samples",
           str(SAMPLES), "--search", "random", "--scheduler", "fifo", "--seed", "0", "--time-budget",
           str(args.budget), "--storage", str(out / "runs"), "--name", name, *resources]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    with (out / f"{name}.log").open("w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=args.budget + 240)
    return out / "runs" / name


def trial_rows(exp: Path) -> list[dict]:
    """Per trial, in launch order: epochs, mean seconds per epoch, peak GPU MiB."""
    import pandas as pd

    rows = []
    for progress in sorted(exp.glob("trial_*/progress.csv"), key=lambda p: p.stat().st_ctime):
        df = pd.read_csv(progress)
        rows.append({"trial": progress.parent.name, "epochs": int(df["epoch"].max()),
                     "epoch_s": round(float(df["epoch_s"].mean()), 3),
                     "gpu_mem_mib": round(float(df["gpu_mem_mib"].max()), 1) if "gpu_mem_mib" in df else None})
    return rows


def side_by_side(task: str, gpu: list[dict], cpu: list[dict]) -> list[str]:
    lines = [f"{task}: trial  GPU epochs  s/epoch  peak MiB | CPU epochs  s/epoch | CPU/GPU s/epoch"]
    for i in range(max(len(gpu), len(cpu))):
        g = gpu[i] if i < len(gpu) else {}
        c = cpu[i] if i < len(cpu) else {}
        ratio = (f"{c['epoch_s'] / g['epoch_s']:.1f}x" if g.get("epoch_s") and c.get("epoch_s") else "-")
        lines.append(f"  #{i}  {g.get('epochs', '-'):>6}  {g.get('epoch_s', '-'):>8}  {g.get('gpu_mem_mib', '-'):>8} | "
                     f"{c.get('epochs', '-'):>6}  {c.get('epoch_s', '-'):>8} | {ratio}")
    return lines


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--tasks", default=None, help="comma-separated (default: every registered task)")
    p.add_argument("--budget", type=float, default=30.0, help="seconds per sweep (--time-budget)")
    p.add_argument("--deadline", type=float, default=400.0, help="start no task after this many seconds")
    p.add_argument("--limit", type=int, default=None, help="examples per split (default: the whole data)")
    p.add_argument("--out", default=os.environ.get("OUT") or str(RESULTS / "gpu"))
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
        return
    from dlb_tune import all_tasks

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    record = {"device": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "budget_s": args.budget}
    say(f"gpu check on {record['gpus']} x {record['device']}: tests marked gpu")
    record["tests"] = pytest_gpu(out)
    print(f"tests marked gpu: {record['tests']['summary']} ({record['tests']['wall_s']}s)", flush=True)
    record["tasks"], record["skipped"] = {}, []
    for task in (args.tasks.split(",") if args.tasks else list(all_tasks())):
        if time.time() - t0 > args.deadline:
            record["skipped"].append(task)
            continue
        say(f"{task}: GPU sweep, then the same trials on CPU ({args.budget:g}s each)")
        runs = {device: trial_rows(sweep(task, device, args, out)) for device in ("gpu", "cpu")}
        record["tasks"][task] = runs
        print("\n".join(side_by_side(task, runs["gpu"], runs["cpu"])), flush=True)
    record["wall_s"] = round(time.time() - t0, 1)
    (out / "gpu.json").write_text(json.dumps(record, indent=2))
    if record["skipped"]:
        print(f"skipped (past --deadline {args.deadline:g}s): {', '.join(record['skipped'])}")
    print(f"wrote {out / 'gpu.json'} ({record['wall_s']}s)")
