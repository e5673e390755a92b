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

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli import DataDir, Tasks, benchmark
from bench.common import RESULTS, ROOT, default_data_dir, say

SAMPLES = 4  # four quarter-GPU trials fill one GPU


def pytest_gpu(out: Path) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    (out / "pytest_gpu.log").write_text(proc.stdout + proc.stderr)
    tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:]
    return {"returncode": proc.returncode, "summary": tail[0] if tail else "", "wall_s": round(time.time() - t0, 1)}


@dataclass(frozen=True)
class Sizes:
    data_dir: str
    budget: float  # seconds per sweep (--time-budget)
    limit: int | None  # examples per split (None: the whole data)


def sweep(task: str, device: str, args: Sizes, out: Path) -> Path:
    """One short sweep; returns its experiment folder."""
    cpus = max(1, (os.cpu_count() or 4) // SAMPLES)
    resources = (["--gpus", "1", "--gpus-per-trial", str(1 / SAMPLES), "--cpus-per-trial", "1"] if device == "gpu"
                 else ["--gpus", "0", "--cpus-per-trial", str(cpus)])
    name = f"{task}-{device}"
    cmd = [sys.executable, "-m", "dlb_tune.cli", "sweep", task, "--data-dir", args.data_dir, "--num-samples",
           str(SAMPLES), "--sampler", "random", "--scheduler", "fifo", "--seed", "0", "--time-budget",
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


@benchmark("gpu")
def gpu(
    data_dir: DataDir = None,
    tasks: Tasks = None,
    budget: Annotated[float, typer.Option(help="Seconds per sweep (--time-budget).")] = 30.0,
    deadline: Annotated[float, typer.Option(help="Start no task after this many seconds.")] = 400.0,
    limit: Annotated[Optional[int], typer.Option(help="Examples per split (default: the whole data).")] = None,
    out: Annotated[Optional[str], typer.Option(help="Results folder (default: $OUT, else bench/results/gpu).")] = None,
) -> None:
    """On a CUDA machine: the tests marked gpu, then GPU vs CPU sweeps per task (bench/gpu_check.sh)."""
    import torch

    if not torch.cuda.is_available():
        print("gpu check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
        return
    from dlb_tune import all_tasks

    sizes = Sizes(data_dir or default_data_dir(), budget, limit)
    out = Path(out or os.environ.get("OUT") or RESULTS / "gpu")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    record = {"device": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "budget_s": budget}
    say(f"gpu check on {record['gpus']} x {record['device']}: tests marked gpu")
    record["tests"] = pytest_gpu(out)
    print(f"tests marked gpu: {record['tests']['summary']} ({record['tests']['wall_s']}s)", flush=True)
    record["tasks"], record["skipped"] = {}, []
    for task in (tasks.split(",") if tasks else list(all_tasks())):
        if time.time() - t0 > deadline:
            record["skipped"].append(task)
            continue
        say(f"{task}: GPU sweep, then the same trials on CPU ({budget:g}s each)")
        runs = {device: trial_rows(sweep(task, device, sizes, out)) for device in ("gpu", "cpu")}
        record["tasks"][task] = runs
        print("\n".join(side_by_side(task, runs["gpu"], runs["cpu"])), flush=True)
    record["wall_s"] = round(time.time() - t0, 1)
    (out / "gpu.json").write_text(json.dumps(record, indent=2))
    if record["skipped"]:
        print(f"skipped (past --deadline {deadline:g}s): {', '.join(record['skipped'])}")
    print(f"wrote {out / 'gpu.json'} ({record['wall_s']}s)")
