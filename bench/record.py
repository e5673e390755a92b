"""``python -m bench record TASK``: train every point of a discretised default space, every epoch,
and write the table replays read (format: ``bench/tables.py``).

    python -m bench record fcn                       # the grid, epochs and --limit of GRIDS["fcn"]["full"]
    python -m bench record emotion --jobs 2          # points in 2 processes
    python -m bench record fcn --grid small --limit 500 --epochs 2 --out /tmp/t.parquet

Each point is trained in this process (or a ``--jobs`` worker) the way a trial trains it
(``start_trial``: the task's own ``train_epoch`` and ``evaluate("val")``, one torch thread, one
fixed seed per point from ``trial_seed``), every epoch to the end: no early stopping, and the
test split is never evaluated. Data is loaded once per process.

An epoch's ``epoch_s`` is the thread's CPU time (``time.thread_time``), so that other work on a
shared machine does not inflate it; the wall seconds are kept beside it (``wall_s``). A point
that diverges (non-finite training loss or metric, where a sweep's trial would error) stops
training: that epoch's row and every later one say ``diverged`` true, and the later rows have NaN
metrics and 0 seconds (a replay ends the trial as errored at its first diverged row).

Progress goes to ``OUT.partial.jsonl``, one line per finished point, so a killed recording
restarted with the same arguments skips the points it already has.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from bench.cli import DataDir, benchmark
from bench.common import command_line, default_data_dir
from bench.tables import TABLES, grid_points, write_table

SEED = 0  # base seed; each point's seed is trial_seed(SEED, "point-<index>")

# Per task and grid name: the values taken of each swept parameter (a list), or for a
# loguniform / uniform parameter a count of values spaced over its range (log-spaced for
# loguniform); ``fixed`` overrides the space's initial (course) config for parameters left out of
# the grid, and ``limit`` / ``epochs`` are the recording's defaults. Sized to the CPU measured for
# each (bench/results/README.md, "Tabular benchmarks").
GRIDS: dict[str, dict[str, dict[str, Any]]] = {
    "fcn": {
        "full": {"params": {"activation": ["sigmoid", "tanh", "relu"], "hidden_size": [128, 256],
                            "num_layers": [1, 2], "lr": 4, "momentum": [0.0, 0.9], "batch_size": [32, 128]},
                 "fixed": {}, "limit": 10000, "epochs": 12},
        # the shipped space since issue 29 (wide layers, random shifts, 20 epochs); "full" is the
        # space before it, kept because bench/results/replay/fcn.* were replayed on its table
        "shifts": {"params": {"activation": ["sigmoid", "tanh", "relu"], "hidden_size": [256, 1024],
                              "num_layers": [1, 2], "lr": 3, "momentum": [0.0, 0.9], "batch_size": [32, 128],
                              "shift": [0, 2]},
                   "fixed": {}, "limit": 10000, "epochs": 20},
        "small": {"params": {"activation": ["sigmoid", "relu"], "lr": 2},
                  "fixed": {"hidden_size": 32}, "limit": 500, "epochs": 2},
    },
    "emotion": {
        "full": {"params": {"cell": ["rnn_tanh", "rnn_relu", "gru", "lstm"], "bidirectional": [False, True],
                            "hidden_size": [32, 64], "pooling": ["last", "max"], "lr": 4},
                 # batch 256 (the space's other choice) halves an epoch's cost against the course's 128
                 "fixed": {"batch_size": 256}, "limit": None, "epochs": 6},
        "small": {"params": {"cell": ["gru", "lstm"], "lr": 2},
                  "fixed": {"hidden_size": 16, "batch_size": 256}, "limit": 300, "epochs": 2},
    },
    # cnn and vae on a few hundred images only (their epochs cost seconds each), so their tables
    # rank configs early in training; they do not reach the space files' targets
    "cnn": {
        "full": {"params": {"depth": [3, 4], "base_width": [8, 12], "width_growth": [1.5, 2.0],
                            "optimizer": ["sgd", "adam"], "lr": 3},
                 "fixed": {"head": "gap"}, "limit": 600, "epochs": 8},
    },
    "vae": {
        "full": {"params": {"cont_dim": [16, 32], "disc_dims": ["10", "20"], "gamma": 3, "lr": 3},
                 "fixed": {}, "limit": 300, "epochs": 5},
    },
}


class RecordError(Exception):
    """Bad arguments or a partial file from another recording; one line for the user."""


def spaced(dist: Any, count: int) -> list[float]:
    """``count`` values from ``dist.low`` to ``dist.high``, log-spaced for a loguniform range;
    4 significant digits, so the table's values read as they were meant."""
    from dlb_tune import LogUniform

    if count < 2:
        raise RecordError(f"a range needs at least 2 grid values, got {count}")
    log = isinstance(dist, LogUniform)
    lo, hi = (math.log(dist.low), math.log(dist.high)) if log else (dist.low, dist.high)
    steps = [lo + (hi - lo) * i / (count - 1) for i in range(count)]
    return [float(f"{(math.exp(s) if log else s):.4g}") for s in steps]


def resolve(spec: Any, definition: dict[str, Any]) -> tuple[dict[str, list[Any]], list[str], dict[str, Any]]:
    """(grid, log params, fixed config) of a grid definition over the task's space."""
    from dlb_tune import Choice, LogUniform, Uniform

    grid, log = {}, []
    for name, values in definition["params"].items():
        dist = spec.params.get(name)
        if dist is None:
            raise RecordError(f"'{name}' is not a parameter of the {spec.task} space")
        if isinstance(values, int):
            if not isinstance(dist, Uniform):
                raise RecordError(f"'{name}' is not a range in the {spec.task} space; list its values")
            values = spaced(dist, values)
            log += [name] if isinstance(dist, LogUniform) else []
        elif isinstance(dist, Choice) and not all(v in dist.candidates() for v in values):
            raise RecordError(f"grid values {values} of '{name}' are not all choices of the space {dist.candidates()}")
        grid[name] = list(values)
    base = {**spec.constants(), **(spec.initial[0] if spec.initial else {}), **definition["fixed"]}
    missing = [k for k in spec.searched() if k not in grid and k not in base]
    if missing:
        raise RecordError(f"{missing} are neither in the grid nor fixed (no initial config gives them)")
    fixed = {k: v for k, v in base.items() if k not in grid}
    return grid, log, fixed


# --- training one point ------------------------------------------------------------------------

_DATA: dict[tuple[str, str, int | None], Any] = {}  # per process: the data loaded, by (task, folder, limit)


def load(task: str, data_dir: str, limit: int | None) -> Any:
    from dlb_tune import default_space_file, load_space

    key = (task, data_dir, limit)
    if key not in _DATA:
        spec = load_space(default_space_file(task), [], None)
        _DATA[key] = spec.task_cls.load_data(Path(data_dir), spec.base_config(), limit)
    return _DATA[key]


def train_point(task: str, index: int, point: dict[str, Any], fixed: dict[str, Any], epochs: int, seed: int,
                data_dir: str, limit: int | None) -> list[dict[str, Any]]:
    """One grid point, every epoch: the rows of the table (module docstring)."""
    import torch

    from dlb_tune import start_trial, trial_seed

    data = load(task, data_dir, limit)
    trainer, _, _ = start_trial(task, {**fixed, **point}, data, seed=trial_seed(seed, f"point-{index}"),
                                max_epochs=epochs, threads=1, device=torch.device("cpu"))
    rows: list[dict[str, Any]] = []
    for epoch in range(epochs):
        cpu, wall = time.thread_time(), time.perf_counter()
        train = trainer.train_epoch(epoch)
        val = trainer.evaluate("val")
        row = {"point": index, "epoch": epoch + 1, **point, **{f"val_{k}": v for k, v in val.items()},
               "train_loss": train["loss"], "epoch_s": time.thread_time() - cpu,
               "wall_s": time.perf_counter() - wall, "diverged": False}
        rows.append(row)
        if not all(math.isfinite(v) for v in (train["loss"], *val.values())):
            break  # where a sweep's trial errors (trainable.epoch_loop)
    if rows[-1]["epoch"] < epochs or not math.isfinite(rows[-1]["train_loss"]):
        rows[-1]["diverged"] = True
        rows += [{**rows[-1], "epoch": e, **{k: math.nan for k in rows[-1] if k.startswith("val_")},
                  "epoch_s": 0.0, "wall_s": 0.0} for e in range(rows[-1]["epoch"] + 1, epochs + 1)]
    return rows


# --- the partial file --------------------------------------------------------------------------


def read_partial(path: Path, header: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """The points already recorded under the same header; a torn last line (a kill) is skipped."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]) != header:
        raise RecordError(f"{path} belongs to a recording with other settings; delete it or pass another --out")
    done = {}
    for line in lines[1:]:
        try:
            rows = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[rows[0]["point"]] = rows
    return done


def append(path: Path, record: Any) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --- the recording -----------------------------------------------------------------------------


def record(task: str, grid_name: str, *, limit: int | None, epochs: int | None, jobs: int, out: Path | None,
           data_dir: str, seed: int = SEED, command: str = "", echo=print) -> Path:
    """Record the table (resuming from its partial file); returns its path."""
    from dlb_tune import default_space_file, load_space

    definition = GRIDS.get(task, {}).get(grid_name)
    if definition is None:
        known = ", ".join(f"{t}/{g}" for t in GRIDS for g in GRIDS[t])
        raise RecordError(f"no grid '{grid_name}' for task '{task}' (known: {known})")
    limit = definition["limit"] if limit is None else (limit or None)  # --limit 0: all the data
    epochs = definition["epochs"] if epochs is None else epochs
    spec = load_space(default_space_file(task), [], None)
    grid, log, fixed = resolve(spec, definition)
    points = grid_points(grid)
    out = Path(out) if out else TABLES / f"{task}.parquet"
    partial = out.with_name(out.name + ".partial.jsonl")
    header = {"task": task, "grid": grid, "fixed": fixed, "epochs": epochs, "limit": limit, "seed": seed}
    done = read_partial(partial, header)
    if not partial.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        append(partial, header)
    todo = [i for i in range(len(points)) if i not in done]
    echo(f"record {task}/{grid_name}: {len(points)} points x {epochs} epochs, limit {limit}; "
         f"{len(done)} already in {partial.name}, {len(todo)} to go, {jobs} process(es)")
    t0 = time.perf_counter()
    args = lambda i: (task, i, points[i], fixed, epochs, seed, data_dir, limit)  # noqa: E731
    for n, rows in enumerate(_run(todo, args, jobs), start=1):
        append(partial, rows)
        done[rows[0]["point"]] = rows
        eta = (time.perf_counter() - t0) / n * (len(todo) - n)
        echo(progress(rows, spec, f"{len(done)}/{len(points)}", eta))
    data = load(task, data_dir, limit)
    meta = {**{k: v for k, v in header.items() if k != "epochs"}, "max_epochs": epochs, "log": log,
            "metric": spec.metric, "mode": spec.mode, "space_max_epochs": spec.max_epochs, "grid_name": grid_name,
            "clock": "thread_cpu", "torch_threads": 1,
            "data_sizes": {k: len(next(iter(data[k].values()))) for k in ("train", "val")},  # examples
            "command": command, "jobs": jobs}
    path = finish(out, [r for i in sorted(done) for r in done[i]], meta)
    partial.unlink()
    echo(f"wrote {path}: {len(points)} points, {meta['cpu_s'] / 60:.1f} CPU-min "
         f"({meta['wall_s'] / 60:.1f} min wall in epochs), {meta['diverged_points']} diverged")
    return path


def progress(rows: list[dict[str, Any]], spec: Any, count: str, eta_s: float) -> str:
    """The log line of a finished point."""
    values = [r[spec.metric] for r in rows if math.isfinite(r[spec.metric])] or [math.nan]
    best = max(values) if spec.mode == "max" else min(values)
    return (f"{time.strftime('%H:%M:%S')} point {rows[0]['point']} ({count}) "
            f"cpu {sum(r['epoch_s'] for r in rows):.1f}s wall {sum(r['wall_s'] for r in rows):.1f}s "
            f"best {spec.metric} {best:.4f}{' DIVERGED' if rows[-1]['diverged'] else ''}; ETA {eta_s / 60:.1f} min")


def finish(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """The table, with the recording's cost and machine added to ``meta``."""
    meta.update({
        "points": len({r["point"] for r in rows}), "diverged_points": len({r["point"] for r in rows if r["diverged"]}),
        "cpu_s": sum(r["epoch_s"] for r in rows), "wall_s": sum(r["wall_s"] for r in rows),  # epochs only
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "processor": _cpu_model()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return write_table(out, rows, meta)


def _run(todo: list[int], args, jobs: int):
    """Each point's rows as it finishes: in this process, or in ``jobs`` worker processes."""
    if jobs <= 1:
        for i in todo:
            yield train_point(*args(i))
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for fut in as_completed([pool.submit(train_point, *args(i)) for i in todo]):
            yield fut.result()


def _cpu_model() -> str:
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor()


@benchmark("record")
def record_command(
    task: Annotated[str, typer.Argument(help="A task with a grid in GRIDS (bench/record.py).")],
    grid: Annotated[str, typer.Option(help="Grid definition in bench/record.py GRIDS.")] = "full",
    limit: Annotated[Optional[int], typer.Option(help="Examples per split (default: the grid's; 0: all).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per point (default: the grid's).")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    out: Annotated[Optional[Path], typer.Option(help="Table path (default: bench/tables/TASK.parquet).")] = None,
    data_dir: DataDir = None,
) -> None:
    """A tabular benchmark: every point of a grid over the default space, every epoch -> bench/tables/TASK.parquet."""
    from dlb_tune import DataError

    try:
        record(task, grid, limit=limit, epochs=epochs, jobs=jobs, out=out, data_dir=data_dir or default_data_dir(),
               command=command_line(), echo=lambda line: print(line, flush=True))
    except (RecordError, DataError) as e:
        raise SystemExit(f"error: {e}") from None
