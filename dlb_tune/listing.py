"""``dlb-tune ls``: the experiments under a storage folder or URI, one row each.

Everything is read through ``dlb_tune.experiment`` (its files, local or remote); a folder counts
as an experiment when it holds a ``space.yaml``. A folder with a damaged file is listed as such
(``damaged final.json``) rather than hiding the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dlb_tune.distributions import SpaceError
from dlb_tune.experiment import (SPACE_FILE, experiment_dir, read_final, read_space, read_trial_table,
                                 resolve_storage)
from dlb_tune.storage import DamagedFile, filesystem

COLUMNS = ["name", "task", "state", "trials", "best", "test", "date"]  # best: on validation, by the task's metric


def list_experiments(storage: str | None) -> list[dict[str, Any]]:
    """One row per experiment under ``storage`` (``--storage``, else the default), newest first."""
    import pyarrow.fs

    root = resolve_storage(storage)
    fs, base = filesystem(root)
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))
    except OSError as e:
        raise FileNotFoundError(f"cannot list {root}: {e}") from e
    rows = []
    for entry in entries:
        if entry.type != pyarrow.fs.FileType.Directory:
            continue
        space = fs.get_file_info(f"{entry.path}/{SPACE_FILE}")
        if space.type == pyarrow.fs.FileType.File:
            rows.append(_row(experiment_dir(entry.base_name, root), entry.base_name, space.mtime))
    return sorted(rows, key=lambda r: (r["date"], r["name"]), reverse=True)


def _row(exp_dir: str, name: str, started: datetime | None) -> dict[str, Any]:
    row = {"name": name, "task": "?", "state": "?", "trials": "-", "best": "-", "test": "-",
           "date": started.astimezone().strftime("%Y-%m-%d %H:%M") if started else "?"}
    try:  # one broken folder must not hide the others: it is listed as such
        return _filled(row, exp_dir)
    except DamagedFile as e:
        return {**row, "state": f"damaged {e.file}"}
    except SpaceError:
        return {**row, "state": f"unreadable {SPACE_FILE}"}
    except Exception as e:  # noqa: BLE001 - files that parse but hold what no sweep writes
        return {**row, "state": f"unreadable ({type(e).__name__})"}


def _filled(row: dict[str, Any], exp_dir: str) -> dict[str, Any]:
    spec = read_space(exp_dir)
    row["task"] = spec.task
    final = read_final(exp_dir)
    try:  # read by pyarrow alone: listing needs no pandas
        trials = read_trial_table(exp_dir)
    except OSError:  # no results.parquet: the sweep is running, or stopped before its end
        trials = None
    row["trials"] = str(trials.num_rows) if trials is not None else "-"
    row["state"] = _state(final, trials is not None)
    best = (final or {}).get("best")
    column = f"best_{spec.metric}"
    if best and best.get(spec.metric) is not None:
        row["best"] = f"{best[spec.metric]:.4g}"
    elif trials is not None and column in trials.column_names:
        value = spec.goal.best(trials.column(column).to_pylist())
        if value is not None:
            row["best"] = f"{value:.4g}"
    row["test"] = _test(final or {}, spec.metric)
    return row


def _state(final: dict[str, Any] | None, has_results: bool) -> str:
    if final:
        return "interrupted" if final.get("interrupted") else "finished"
    # results.parquet without final.json: the sweep stopped between the two
    return "no final" if has_results else "no results"


def _test(final: dict[str, Any], metric: str) -> str:
    """The test split's value of the task's metric and, with a target, whether it was met (a
    final.json that names no test metric: ``val_X`` is ``test_X``, as ``compare`` reads it)."""
    metric, test = final.get("test_metric") or "test_" + metric.removeprefix("val_"), final.get("test") or {}
    if metric not in test:
        return "-"
    if final.get("target") is None:
        return f"{test[metric]:.4g}"
    return f"{test[metric]:.4g} {'met' if final.get('target_met') else 'NOT met'}"


def table_lines(rows: list[dict[str, Any]], columns: int | None = None) -> list[str]:
    """Columns two spaces apart, fitted to the terminal: names, states and numbers whole; a test
    verdict and a date wrap at their spaces before a row would go below the others."""
    from dlb_tune.show import table

    return table(COLUMNS, [[r[c] for c in COLUMNS] for r in rows], whole=["name", "task", "state", "trials", "best"],
                 columns_wide=columns)
