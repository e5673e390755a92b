"""Figure 3, quality per task: the best test metric (winner selected on validation, tested once)
of each task's default sweep on this machine, with its wall time.

Each task has its own benchmark script, ``bench/<task>_sweep.py``, which runs the default sweep
on 2 CPUs and writes ``bench/results/<task>.json``. The full figure runs them (one after the
other); ``--quick`` only reads what they last wrote (a default sweep takes 3 to 15+ minutes each).
A task without a script or without results is reported as missing, never estimated.

    python -m bench quality [--quick] [--tasks fcn,cnn]
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, load_json, say

# task -> rows of (label, section of <task>.json, metric key); the schemas are the task scripts'
ROWS: dict[str, list[tuple[str, str, str]]] = {
    "fcn": [("best", "best_overall", "test_acc")],
    "cnn": [("best", "best_overall", "test_acc"), ("best under 100K params", "best_under_100k", "test_acc")],
    "emotion": [("best", "best", "test_acc")],
    "vae": [("best", "sweep", "test_nelbo")],
}
TIMEOUT_S = 3 * 3600  # one default sweep; the longest (vae with its baselines) is well under this


def script(task: str) -> Path:
    return ROOT / "bench" / f"{task}_sweep.py"


def run_script(task: str, data_dir: str) -> dict[str, Any] | None:
    """Run one task's benchmark script; None if it worked, else what went wrong."""
    say(f"figure 3: running bench/{task}_sweep.py (a full default sweep)")
    cmd = [sys.executable, str(script(task)), "--data-dir", data_dir]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"bench/{task}_sweep.py ran past {TIMEOUT_S}s"}
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        return {"error": f"bench/{task}_sweep.py exited with {proc.returncode}", "log_tail": tail}
    return None


def read_task(task: str) -> dict[str, Any]:
    """The rows of one task from its JSON, or why there are none."""
    if not script(task).exists():
        return {"status": "missing", "why": f"bench/{task}_sweep.py does not exist yet"}
    path = RESULTS / f"{task}.json"
    report = load_json(path)
    if report is None:
        return {"status": "missing", "why": f"no {path.relative_to(ROOT)}: run python bench/{task}_sweep.py"}
    rows = []
    for label, section, key in ROWS[task]:
        part = report.get(section) or {}
        rows.append({"label": label, "metric": key, "value": part.get(key), "val_acc": part.get("val_acc"),
                     "val_nelbo": part.get("val_nelbo"), "params": part.get("params")})
    written = report.get("date") or dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(timespec="seconds")
    return {
        "status": "ok", "rows": rows, "file": str(path.relative_to(ROOT)), "written": written,
        "command": report.get("command"),
        "wall_s": report.get("wall_s") or (report.get("sweep") or {}).get("wall_s"),
        "trials": report.get("trials") or (report.get("sweep") or {}).get("trials"),
        "target": report.get("target"), "target_met": report.get("target_met"),
        "goal": report.get("goal"), "goal_met": report.get("goal_met"),
    }


def figure(quick: bool, data_dir: str, tasks: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in tasks or list(ROWS):
        run_error = None
        if not quick and script(task).exists():
            run_error = run_script(task, data_dir)
        out[task] = read_task(task)
        if run_error:
            out[task]["run_error"] = run_error
            out[task]["note"] = "this run failed; the rows (if any) are from an earlier run"
        say(f"figure 3: {task}: {out[task]['status']}")
    return {"settings": {"ran_scripts": not quick, "tasks": list(out)}, "tasks": out}
