"""What every figure shares: where results go, the machine and its load, timing, memory sampling.

A figure is a function returning a dict; ``Figure`` wraps it with the date, the machine, the
load average at start and end (the machine may be shared, so readers can judge the noise) and
the command, and saves it as ``bench/results/<mode>/<name>.json``. Nothing here asserts a
timing: benchmarks report, they do not judge.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

from dlb_tune import places

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def default_data_dir() -> str:
    """``$DLB_TUNE_DATA``, else ``../shared/data`` beside the checkout (``places.checkout_data_dir``)."""
    return str(places.checkout_data_dir(ROOT))


def mode_dir(quick: bool) -> Path:
    return RESULTS / ("quick" if quick else "full")


# --- the machine ------------------------------------------------------------------------------


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on every platform
        return None


def machine() -> dict[str, Any]:
    """What a reader needs to compare numbers across machines."""
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    for lib in ("ray", "optuna"):
        try:
            info[lib] = __import__(lib).__version__
        except ImportError:
            info[lib] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine_line(m: dict[str, Any]) -> str:
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    return (f"{m.get('host')}: {m.get('cpus')} CPU(s) ({m.get('cpu')}), {m.get('ram_gib')} GiB RAM, {gpus}; "
            f"{m.get('os')}, Python {m.get('python')}, torch {m.get('torch')}, ray {m.get('ray')}, "
            f"optuna {m.get('optuna')}")


# --- a figure's record ------------------------------------------------------------------------


def command_line() -> str:
    """This process's ``python -m bench ...`` command, for a record to say what made it."""
    return "python -m bench " + shlex.join(sys.argv[1:])


def run_figure(name: str, number: int, quick: bool, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one figure, stamp it with date, machine, load and command, save and return it."""
    started = dt.datetime.now().astimezone()
    load_start = loadavg()
    t0 = time.perf_counter()
    body = fn()
    record = {
        "figure": number,
        "name": name,
        "mode": "quick" if quick else "full",
        "command": command_line(),
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "machine": machine(),
        **body,
    }
    save_json(mode_dir(quick) / f"{name}.json", record)
    return record


def save_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(obj), indent=2) + "\n")


def load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        # significant digits, not decimals: round(1.5e-4, 4) would record a weight decay of 1e-4
        return float(f"{obj:.6g}") if math.isfinite(obj) else None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            return jsonable(obj.item())
        except (ValueError, AttributeError):
            return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --- small helpers ----------------------------------------------------------------------------


def median(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def say(text: str) -> None:
    """Progress on stderr, so the figure's own output (the table) stays clean on stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class scratch_dir:
    """A temporary folder for sweep storage and caches, removed afterwards (checkpoints add up)."""

    def __init__(self, prefix: str):
        self.path = Path(tempfile.mkdtemp(prefix=f"dlb-bench-{prefix}-"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# --- memory of a whole process tree (Linux /proc; no extra dependency) -------------------------


def _children_by_parent() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
        kids[ppid].append(int(entry.name))
    return kids


def process_tree(root: int) -> list[int]:
    kids, out, todo = _children_by_parent(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB. PSS splits shared pages (Ray's object store, shared
    libraries) among the processes mapping them, so PSS sums over a tree without double counting."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeMemory:
    """Samples the summed PSS and RSS of a process and all its descendants in a thread; keeps peaks.

    Ray's GCS, raylet, dashboard and worker processes are descendants of the driver, so sampling
    the driver's tree covers the whole sweep.
    """

    def __init__(self, root_pid: int, interval_s: float = 0.25):
        self.root, self.interval = root_pid, interval_s
        self.peak_pss_kib = self.peak_rss_kib = self.peak_procs = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = Path("/proc/self/smaps_rollup").exists()

    def __enter__(self) -> "TreeMemory":
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = process_tree(self.root)
            sizes = [memory_kib(p) for p in pids]
            self.peak_rss_kib = max(self.peak_rss_kib, sum(r for r, _ in sizes))
            self.peak_pss_kib = max(self.peak_pss_kib, sum(p for _, p in sizes))
            self.peak_procs = max(self.peak_procs, len(pids))
            self.samples += 1
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        if not self.available or not self.samples:
            return {"peak_pss_mib": None, "peak_rss_mib": None, "peak_processes": None,
                    "note": "needs Linux /proc/<pid>/smaps_rollup"}
        return {"peak_pss_mib": round(self.peak_pss_kib / 1024, 1),
                "peak_rss_mib": round(self.peak_rss_kib / 1024, 1),
                "peak_processes": self.peak_procs, "samples": self.samples}


def run_leg(module: str, settings: dict[str, Any], out: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``python -m <module> SETTINGS_JSON`` in a fresh process, sampling its whole process
    tree's memory; the leg reads ``settings`` (and ``out``) from that file and writes its timings
    to ``out`` as JSON. Fresh processes keep one leg's allocations and threads out of the next
    leg's numbers."""
    import subprocess

    args = out.with_name(f"{out.stem}.settings.json")
    save_json(args, {**settings, "out": str(out)})
    cmd = [sys.executable, "-m", module, str(args)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timed_out = False
    with TreeMemory(proc.pid) as mem:
        try:
            log, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            log, _ = proc.communicate()
    wall = time.perf_counter() - t0
    result = load_json(out)
    if timed_out:
        return {"error": f"did not finish within {timeout_s:.0f}s (stopped)", "timed_out": True,
                "process_wall_s": round(wall, 1), "memory": mem.summary()}
    if proc.returncode != 0 or result is None:
        tail = "\n".join((log or "").strip().splitlines()[-15:])
        return {"error": f"leg {json.dumps(settings)} exited with {proc.returncode}", "log_tail": tail,
                "process_wall_s": round(wall, 1), "memory": mem.summary()}
    return {**result, "process_wall_s": round(wall, 1), "memory": mem.summary()}
