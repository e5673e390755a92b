"""Tabular benchmarks: every point of a discretised space, every epoch, in one Parquet table.

Recording a table (``python -m bench record TASK``) trains each grid point once, without early
stopping; replaying it (``python -m bench replay``) runs the real Tune searchers and schedulers
over a trainable that looks each epoch up instead of training, so strategies can be compared
over many seeds for the price of one recording (the idea of HPOBench and NAS-Bench tables).

One row per point and epoch:

    point    int     the grid point's index (0..n-1)
    epoch    int     1..max_epochs
    <param>  ...     the point's value of each swept parameter, named by its YAML key
    <metric> float   every validation metric the task reported after this epoch (val_acc, ...)
    epoch_s  float   that epoch's seconds (training and validation), see ``meta["clock"]``

The Parquet schema's metadata (key ``dlb_tune``) holds a JSON object ``meta``: ``task``,
``metric``, ``mode``, ``max_epochs``, ``grid`` ({param: [values]}), ``log`` (params whose grid is
spaced in log scale, so snapping is too), ``fixed`` ({param: value} held constant), ``clock``,
``seed``, ``limit``, the machine, the command and the recording's cost. ``write_table`` checks
that every grid point has every epoch, so a replay never meets a hole.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

TABLES = Path(__file__).resolve().parent / "tables"
META_KEY = b"dlb_tune"
REQUIRED_META = ("task", "metric", "mode", "max_epochs", "grid")


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a fixed order (the table's ``point`` index)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def write_table(path: Path | str, rows: Iterable[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Rows as described in the module docstring -> ``path`` (Parquet, zstd), ``meta`` in its schema."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"table meta lacks {missing}")
    frame = pd.DataFrame(list(rows)).sort_values(["point", "epoch"], kind="stable").reset_index(drop=True)
    _check_complete(frame, meta)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def _check_complete(frame: Any, meta: dict[str, Any]) -> None:
    points = grid_points(meta["grid"])
    counts = frame.groupby("point")["epoch"].nunique()
    short = [int(p) for p in range(len(points)) if counts.get(p, 0) != meta["max_epochs"]]
    if short:
        raise ValueError(f"{len(short)} of {len(points)} grid points lack epochs, e.g. point {short[0]}")


@dataclass
class Table:
    """A recorded table, indexed for replay: ``curve(point)`` -> per-epoch (values, seconds)."""

    meta: dict[str, Any]
    frame: Any  # pandas DataFrame, the rows as written

    def __post_init__(self) -> None:
        self.points = grid_points(self.meta["grid"])
        self._curves: dict[int, tuple[list[float], list[float]]] = {}
        self._diverged: dict[int, int] = {}  # point -> the epoch whose loss went non-finite
        for point, rows in self.frame.groupby("point", sort=True):
            rows = rows.sort_values("epoch")
            if "diverged" in rows and rows["diverged"].any():
                self._diverged[int(point)] = int(rows.loc[rows["diverged"].astype(bool), "epoch"].min())
            self._curves[int(point)] = ([float(v) for v in rows[self.metric]], [float(s) for s in rows["epoch_s"]])

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    @property
    def mode(self) -> str:
        return self.meta["mode"]

    @property
    def max_epochs(self) -> int:
        return int(self.meta["max_epochs"])

    def curve(self, point: int) -> tuple[list[float], list[float]]:
        """Per-epoch (values, seconds), cut before a diverged point's first non-finite epoch (the
        epoch where a real trial errors: ``diverged_at``)."""
        values, seconds = self._curves[point]
        stop = self._diverged.get(point)
        return (values, seconds) if stop is None else (values[: stop - 1], seconds[: stop - 1])

    def diverged_at(self, point: int) -> int | None:
        """The epoch a real trial of ``point`` errors in (its training loss went non-finite), or None."""
        return self._diverged.get(point)

    def snap(self, config: dict[str, Any]) -> int:
        """The grid point nearest ``config``: per parameter the closest grid value (in log scale for
        ``meta["log"]`` parameters, exact for categorical ones); keys not in the grid are ignored."""
        grid, log = self.meta["grid"], set(self.meta.get("log", ()))
        chosen = {name: _nearest(config[name], values, name in log) for name, values in grid.items()}
        return self.points.index(chosen)

    def best(self) -> float:
        """The best value anywhere in the table (the oracle a replay's regret is measured from)."""
        col = self.frame[self.metric]
        return float(col.max() if self.mode == "max" else col.min())


def _nearest(value: Any, values: list[Any], log: bool) -> Any:
    if value in values:
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise KeyError(f"{value!r} is not one of the grid's values {values}")
    scale = (lambda v: math.log(v)) if log else (lambda v: float(v))
    return min(values, key=lambda v: abs(scale(v) - scale(value)))


def read_table(path: Path | str) -> Table:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a dlb-tune benchmark table (no '{META_KEY.decode()}' metadata)")
    return Table(json.loads(raw), table.to_pandas())


def replay_trainable(config: dict[str, Any], table: Table, scale: float, checkpoint: bool = False) -> None:
    """A Tune function trainable that replays the snapped point's recorded curve: each epoch sleeps
    its recorded seconds times ``scale``, then reports the recorded metric. Use with
    ``tune.with_parameters(replay_trainable, table=..., scale=...)``. Reports carry ``point`` and
    ``sim_s`` (the recorded seconds so far) besides the metric.

    ``checkpoint=True`` saves the epoch with every report and resumes after it, for schedulers
    that pause trials (HyperBand, BOHB); without it a paused trial would start over at epoch 1.
    A point that diverged errors after its diverged epoch's seconds, unreported, as a trial does."""
    from ray import tune

    point = table.snap(config)
    values, seconds = table.curve(point)
    done = _resumed_epoch() if checkpoint else 0
    sim = sum(seconds[:done])
    for epoch, (value, secs) in enumerate(zip(values, seconds), start=1):
        if epoch <= done:
            continue
        time.sleep(secs * scale)
        sim += secs
        metrics = {table.metric: value, "epoch": epoch, "point": point, "sim_s": sim}
        if checkpoint:
            _report_with_epoch(metrics, epoch)
        else:
            tune.report(metrics)
    replay_divergence(table, point, scale)


class ReplayDiverged(RuntimeError):
    """A replayed point whose recorded training diverged: its trial errors, as the real one did."""


def replay_divergence(table: Table, point: int, scale: float) -> None:
    """For a diverged point, after its recorded curve: sleep the diverged epoch, then error."""
    stop = table.diverged_at(point)
    if stop is not None:
        time.sleep(table._curves[point][1][stop - 1] * scale)
        raise ReplayDiverged(f"point {point}: training loss not finite in epoch {stop}")


def _resumed_epoch() -> int:
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return 0
    with ckpt.as_directory() as d:
        return int((Path(d) / "epoch").read_text())


def _report_with_epoch(metrics: dict[str, Any], epoch: int) -> None:
    import tempfile

    from ray import tune

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "epoch").write_text(str(epoch))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
