"""``python -m bench FIGURE [--quick]``: run benchmark figures, save JSON, write the markdown table.

    python -m bench all --quick          # every figure, small: under 20 minutes on 2 CPUs
    python -m bench all                  # every figure at full size (hours; see bench/results/README.md)
    python -m bench sweep-efficiency     # one figure
    python -m bench table [--quick]      # re-render table.md from the saved JSON
    python -m bench sweep TASK [--smoke] # one task's default sweep -> bench/results/<task>.json
    python -m bench record TASK          # a tabular benchmark -> bench/tables/TASK.parquet
    python -m bench replay TASK          # search strategies on a recorded table, 20 seeds (bench/replay.py)
    python -m bench mutation MODULE|all  # mutation testing, not a figure (bench/mutation.py)
    python -m bench gpu [--tasks ...]    # on a CUDA machine: tests marked gpu, GPU vs CPU sweeps
    python -m bench autoscale            # a sweep on a local autoscaling cluster from 0 workers
    python -m bench driver-scale         # the Tune driver with 8-64 simulated workers (table replay)
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from typing import Any, Callable

from bench.common import default_data_dir, mode_dir, run_figure, save_json, say

FIGURES = ("sweep-efficiency", "early-stopping", "data-path", "scaling", "quality")  # `all` runs this order
NUMBERS = {"sweep-efficiency": 1, "early-stopping": 2, "quality": 3, "data-path": 4, "scaling": 5}


def figure_fn(name: str, args: argparse.Namespace) -> Callable[[], dict[str, Any]]:
    """The figure's ``figure(quick, data_dir, ...)``, imported only when it runs."""
    import importlib

    module = importlib.import_module(f"bench.{name.replace('-', '_')}")
    extra: dict[str, Any] = {}
    if name == "early-stopping":
        extra["seeds"] = args.seeds
    if name in ("quality", "early-stopping") and args.tasks:
        extra["tasks"] = args.tasks.split(",")
    return lambda: module.figure(args.quick, args.data_dir, **extra)


def run_one(name: str, args: argparse.Namespace, argv: list[str]) -> None:
    """One figure; a crash is saved as the figure's result so the other figures still run."""
    key = name.replace("-", "_")
    say(f"figure {NUMBERS[name]} ({name}) starting")
    try:
        rec = run_figure(key, NUMBERS[name], args.quick, figure_fn(name, args), argv)
        say(f"figure {NUMBERS[name]} ({name}) done in {rec['wall_s']:.0f}s")
    except Exception as e:  # noqa: BLE001 - record and go on
        from bench.common import loadavg

        save_json(mode_dir(args.quick) / f"{key}.json", {
            "figure": NUMBERS[name], "name": key, "mode": "quick" if args.quick else "full",
            "command": "python -m bench " + " ".join(argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "wall_s": 0.0, "loadavg_start": None, "loadavg_end": loadavg(),
            "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]})
        say(f"figure {NUMBERS[name]} ({name}) FAILED: {type(e).__name__}: {e}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:  # its own options: python -m bench sweep --help
        from bench.sweep import main as sweep

        return sweep(argv[1:])
    if argv[:1] == ["gpu"]:  # the CUDA checks (bench/gpu_check.sh); its own options
        from bench.gpu import main as gpu

        return gpu(argv[1:])
    if argv[:1] == ["autoscale"]:  # the local autoscaling cluster's figures; its own options
        from bench.autoscale import main as autoscale

        return autoscale(argv[1:])
    if argv[:1] == ["record"]:  # a tabular benchmark (bench/record.py); its own options
        from bench.record import main as record

        return record(argv[1:])
    if argv[:1] == ["driver-scale"]:  # its own options too
        from bench.driver_scale import main as driver_scale

        return driver_scale(argv[1:])
    if argv[:1] == ["replay"]:  # strategies compared on a recorded table (bench/replay.py); its own options
        from bench.replay import main as replay

        return replay(argv[1:])
    if argv[:1] == ["mutation"]:  # its own options too
        from bench import mutation

        return mutation.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("figure", choices=("all", *FIGURES, "table", "sweep"))
    p.add_argument("--quick", action="store_true", help="small settings (all figures in under 20 minutes on 2 CPUs)")
    p.add_argument("--data-dir", default=default_data_dir(), help="data folder (default: $DLB_TUNE_DATA or ../shared/data)")
    p.add_argument("--seeds", type=int, default=3, help="figure 2: seeds per method (median over them)")
    p.add_argument("--tasks", default=None, help="figures 2 and 3: comma-separated tasks (default: all)")
    args = p.parse_args(argv)

    from bench import table

    t0 = time.perf_counter()
    for name in (FIGURES if args.figure == "all" else () if args.figure == "table" else (args.figure,)):
        run_one(name, args, argv)
        table.write(args.quick)  # after every figure, so a long run leaves a table as it goes
    path = table.write(args.quick)
    print(path.read_text())
    say(f"wrote {path} ({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
