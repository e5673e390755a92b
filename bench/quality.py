"""Figure 3, quality per task: the best test metric (winner selected on validation, tested once)
of each registered task's default sweep on this machine, with its wall time.

``python -m bench sweep TASK`` runs one task's default sweep on 2 CPUs and writes
``bench/results/<task>.json``. The full figure runs it for every task (one after the other);
``--quick`` only reads what it last wrote (a default sweep takes 3 to 15+ minutes each). A task
without results is reported as missing, never estimated.

    python -m bench quality [--quick] [--tasks fcn,cnn]
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any

from bench.cli import DataDir, Quick, Tasks, figure
from bench.common import RESULTS, ROOT, load_json, say
from bench.table import table

TIMEOUT_S = 3 * 3600  # one default sweep; the longest (vae with its baselines) is well under this


def run_sweep(task: str, data_dir: str) -> dict[str, Any] | None:
    """Run one task's benchmark sweep; None if it worked, else what went wrong."""
    command = f"python -m bench sweep {task}"
    say(f"figure 3: running {command} (a full default sweep)")
    cmd = [sys.executable, "-m", "bench", "sweep", task, "--data-dir", data_dir]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"{command} ran past {TIMEOUT_S}s"}
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        return {"error": f"{command} exited with {proc.returncode}", "log_tail": tail}
    return None


def read_task(task: str) -> dict[str, Any]:
    """The rows of one task from its JSON (the winner, and the sections it names), or why there are none."""
    path = RESULTS / f"{task}.json"
    report = load_json(path)
    if report is None:
        return {"status": "missing", "why": f"no {path.relative_to(ROOT)}: run python -m bench sweep {task}"}
    metric = report["metric"]
    test_key = "test_" + metric.removeprefix("val_")
    rows = []
    for label, section in (report.get("rows") or {"best": "best"}).items():
        part = report.get(section) or {}
        rows.append({"label": label, "metric": test_key, "value": part.get(test_key),
                     "validation": part.get(metric), "params": part.get("params")})
    written = report.get("date") or dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(timespec="seconds")
    return {
        "status": "ok", "rows": rows, "file": str(path.relative_to(ROOT)), "written": written,
        "command": report.get("command"), "wall_s": report.get("wall_s"), "trials": report.get("trials"),
        "target": report.get("target"), "target_met": report.get("target_met"),
        "goal": report.get("goal"), "goal_met": report.get("goal_met"),
    }


def render(rec: dict[str, Any]) -> list[str]:
    rows = []
    for task, t in rec["tasks"].items():
        if t["status"] != "ok":
            rows.append([task, "missing", "-", "-", "-", "-", "-", t["why"]])
            continue
        for r in t["rows"]:
            rows.append([task, r["label"], r["metric"], r["value"], r["validation"], r["params"], t["wall_s"],
                         f"{t['written']}: `{t['command']}`"])
    lines = ["Default sweep per task on this machine (2 CPUs), winner chosen on validation, tested once."
             + ("" if rec["settings"]["ran_sweeps"] else " Quick mode reads each task's last `python -m bench sweep`."), ""]
    return lines + table(["task", "trial", "test metric", "value", "validation", "params", "wall (s)", "from"], rows)


@figure(3, "quality", "Quality per task", render)
def measure(quick: Quick = False, data_dir: DataDir = None, tasks: Tasks = None) -> dict[str, Any]:
    """Each registered task's default sweep: best test metric and wall time."""
    from dlb_tune import all_tasks

    out: dict[str, Any] = {}
    for task in tasks.split(",") if tasks else list(all_tasks()):
        run_error = None if quick else run_sweep(task, data_dir)
        out[task] = read_task(task)
        if run_error:
            out[task]["run_error"] = run_error
            out[task]["note"] = "this run failed; the rows (if any) are from an earlier run"
        say(f"figure 3: {task}: {out[task]['status']}")
    return {"settings": {"ran_sweeps": not quick, "tasks": list(out)}, "tasks": out}
