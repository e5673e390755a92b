"""After the sweep: the per-trial table, the one test evaluation, ``final.json``.

The sweep's last step (``sweep.run`` calls ``finish``, then writes TensorBoard's extras and prints
the summary); what it writes, the reading commands read.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from dlb_tune.compared import value_rows
from dlb_tune.distributed import best_train_checkpoint
from dlb_tune.experiment import PARETO_REPORT_DIR, TEST_REPORT_DIR, file_in, write_final, write_results
from dlb_tune.storage import is_uri, local_folder
from dlb_tune.objective import ENDED, TrialStatus, pareto_front
from dlb_tune.show import error_line
from dlb_tune.storage import located
from dlb_tune.tasks import Trials
from dlb_tune.trainable import checkpoint_figures, evaluate_checkpoint


def trial_table(grid, spec, stopped: set[str], budget_hit: bool, interrupted: bool = False) -> pd.DataFrame:
    """One row per trial: status (``TrialStatus``), epochs, config/<key>, last metrics,
    best_<metric>, error; best first."""
    rows = []
    for result in grid:
        metrics = dict(result.metrics or {})
        # a trial that never reported: its id from its folder (engine.trial_dirname: trial_<id>)
        trial_id = metrics.get("trial_id") or Path(result.path).name.removeprefix("trial_")
        history = result.metrics_dataframe
        row: dict[str, Any] = {"trial_id": trial_id}
        row.update({f"config/{k}": v for k, v in (result.config or {}).items()})
        epochs = int(metrics.get("epoch", 0) or 0)
        status = TrialStatus.classify(epochs=epochs, max_epochs=spec.max_epochs, errored=result.error is not None,
                                      stopped=trial_id in stopped, budget_hit=budget_hit, interrupted=interrupted)
        row.update(status=status.value, epochs=epochs, error=_error_line(result.error))
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in row:
                row[key] = value
        if history is not None and spec.metric in history:
            series = history[spec.metric].dropna()
            if len(series):
                best_idx = spec.goal.best_index(series)
                row[f"best_{spec.metric}"] = float(series[best_idx])
                row["best_epoch"] = int(history.loc[best_idx, "epoch"]) if "epoch" in history else None
        row["node_id"] = metrics.get("node_id")
        row["wall_s"] = float(history["time_total_s"].max()) if history is not None and "time_total_s" in history else None
        row["path"] = result.path
        rows.append(row)
    df = pd.DataFrame(rows)
    if "error" in df:  # text even when no trial errored, so the parquet column has one type
        df["error"] = df["error"].astype("string")
    if len(df) and f"best_{spec.metric}" in df:
        df = spec.goal.sort(df, f"best_{spec.metric}")
    return df.reset_index(drop=True)


def _error_line(error) -> str | None:
    return None if error is None else error_line(str(error))


def finish(grid, spec, opts, data, exp_dir: str, wall: float, stopped: set[str], interrupted: bool = False,
           timings: dict[str, float] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """results.parquet, the one test evaluation and final.json; returns what final.json holds and
    the trial table. ``timings``: data loading and Ray start-up, shown beside the trials' time."""
    budget_hit = bool(spec.time_budget_s and wall >= spec.time_budget_s * 0.98)
    df = trial_table(grid, spec, stopped, budget_hit, interrupted)
    write_results(exp_dir, df)
    counts = {s.value: int((df["status"] == s).sum()) if len(df) else 0 for s in ENDED}
    final: dict[str, Any] = {
        "task": spec.task, "name": opts.name, "experiment_dir": exp_dir,
        "metric": spec.metric, "mode": spec.mode, "target": spec.target,
        "sampler": spec.search.get("sampler", "tpe") if spec.searched() else "none", "scheduler": opts.scheduler, "seed": opts.seed,
        "num_samples": spec.num_samples, "max_epochs": spec.max_epochs,
        "trials": {"total": len(df), **counts}, "wall_s": round(wall, 1),
        "errors": [{"trial_id": r.trial_id, "error": r.error} for r in df.itertuples() if r.status == TrialStatus.ERRORED],
    }
    if interrupted and counts[TrialStatus.INCOMPLETE]:
        final["interrupted"] = True  # the test split waits for the resumed sweep's end
    best_col = f"best_{spec.metric}"
    ok = df[df["status"] != TrialStatus.ERRORED] if len(df) else df
    candidates = ok.dropna(subset=[best_col]) if best_col in df else df.iloc[0:0]
    t_test = time.time()
    if len(candidates) and not final.get("interrupted"):
        final.update(evaluate_best(grid, candidates.iloc[0], spec, data, exp_dir))
    test_s = time.time() - t_test
    if spec.compare_by and not final.get("interrupted"):
        final["compared"] = compare_values(grid, df, spec, data, exp_dir, final)
    course = initial_trial(df, spec, enqueued=1 if opts.enqueue else 0)
    if course:
        final["course"] = course
    goals = spec.goals()
    if len(goals) > 1:
        columns = [f"best_{g.metric}" if g.metric == spec.metric else g.metric for g in goals]
        front = pareto_front(ok, goals, columns)
        final["pareto"] = [{"trial_id": r["trial_id"], **{g.metric: r.get(c) for g, c in zip(goals, columns)},
                            "config": _config_of(r)} for _, r in front.iterrows()]
        if not final.get("interrupted"):
            drawn = pareto_figures(grid, front, goals, columns, spec, data, exp_dir)
            if drawn:
                final["pareto_figures"] = drawn
    extra = spec.task_cls.summarize(Trials.from_table(df, spec.metric))
    if extra:
        final["task_summary"] = extra
    if timings:
        final["timings"] = {"data_s": round(timings.get("data_s", 0.0), 1),
                            "ray_start_s": round(timings.get("ray_start_s", 0.0), 1),
                            "trials_s": round(wall, 1), "test_s": round(test_s, 1)}
    write_final(exp_dir, final)
    return final, df


def compare_values(grid, df: pd.DataFrame, spec, data, exp_dir: str, final: dict[str, Any]) -> dict[str, Any]:
    """``compare_by``: per value, what it was given and its best; the test value of each value's
    best trial, evaluated here, once, for comparison only (the winner's is the one already read)."""
    param = spec.compare_by
    rows = value_rows(df, param, list(spec.params[param].values), spec.metric, spec.goal)
    test_metric = test_metric_of(spec.metric)
    winner = (final.get("best") or {}).get("trial_id")
    for row in rows:
        if "trial_id" not in row:
            continue
        if row["trial_id"] == winner:
            test = final.get("test") or {}
        else:
            best_row = df[df["trial_id"] == row["trial_id"]].iloc[0]
            folder = f"{TEST_REPORT_DIR}/{param}={row['value']}"  # the winner's figures stay where they are
            test = evaluate_best(grid, best_row, spec, data, exp_dir, folder).get("test") or {}
        row["test"] = test.get(test_metric)
    return {"param": param, "test_metric": test_metric, "rows": rows}


def pareto_figures(grid, front: pd.DataFrame, goals, columns: list[str], spec, data, exp_dir: str
                   ) -> dict[str, Any] | None:
    """The Pareto trial best on the task's ``pareto_figures_by`` metric and its best checkpoint's
    ``test_report`` figures (no test metric computed), in a folder of their own even when it is
    the winner; None when the task names no such metric among the objectives."""
    by = spec.task_cls.pareto_figures_by
    metrics = [g.metric for g in goals]
    if by not in metrics or front.empty:
        return None
    i = metrics.index(by)
    pool, among = pareto_figures_pool(front, spec.task_cls, spec.max_epochs)
    row = goals[i].sort(pool, columns[i]).iloc[0]
    out = {"trial_id": row["trial_id"], "metric": by, "value": float(row[columns[i]]), "status": row["status"],
           "epochs": int(row["epochs"]), "among": among}
    result, checkpoint, ckpt_path = _best_checkpoint(grid, row["trial_id"], spec, exp_dir)
    if ckpt_path is None:
        return {**out, "error": "the trial left no checkpoint"}
    with local_folder(file_in(exp_dir, PARETO_REPORT_DIR)) as out_dir, _checkpoint_dir(checkpoint, ckpt_path) as ckpt_dir:
        drawn = checkpoint_figures(spec.task, dict(result.config), data, ckpt_dir, out_dir, spec.max_epochs)
    return {**out, "folder": PARETO_REPORT_DIR, **drawn}


def pareto_figures_pool(front: pd.DataFrame, task_cls, max_epochs: int) -> tuple[pd.DataFrame, str]:
    """The Pareto trials the figures' model is picked from, and what they share in words ("" for
    the whole front): those trained all epochs (a model stopped after 2 reads differently), then
    those meeting the task's ``pareto_figures_rule``; each narrowing only where some are left."""
    pool, said = front, []
    trained = front[front["epochs"] >= max_epochs]
    if len(trained):
        pool, said = trained, [f"trained all {max_epochs} epochs"]
    if task_cls.pareto_figures_rule:
        used = pool[[task_cls.pareto_figures_uses(r) for r in pool.to_dict("records")]]
        if len(used):
            pool, said = used, [*said, task_cls.pareto_figures_rule]
    return pool, ", ".join(said)


def _best_checkpoint(grid, trial_id: str, spec, exp_dir: str):
    """A trial's result, its best Tune checkpoint (None for a data-parallel trial's) and that
    checkpoint's path (None when it left none)."""
    result = next(r for r in grid if (r.metrics or {}).get("trial_id") == trial_id)
    checkpoint = result.get_best_checkpoint(spec.metric, spec.mode) if result.best_checkpoints else None
    ckpt_path = checkpoint.path if checkpoint else best_train_checkpoint(result.metrics_dataframe, spec.metric, spec.mode)
    if checkpoint and is_uri(exp_dir):  # Ray gives the path inside the bucket
        ckpt_path = located(exp_dir, ckpt_path)
    return result, checkpoint, ckpt_path


@contextmanager
def _checkpoint_dir(checkpoint, ckpt_path: str) -> Iterator[str]:
    """A local folder holding the checkpoint: Tune's, fetched; a data-parallel trial's, as it is."""
    if checkpoint is None:  # Ray Train's checkpoint, a folder in the trial's storage
        yield ckpt_path
        return
    with checkpoint.as_directory() as ckpt_dir:
        yield ckpt_dir


def evaluate_best(grid, best_row, spec, data, exp_dir: str, report_dir: str = TEST_REPORT_DIR) -> dict[str, Any]:
    """Evaluate the best trial's best checkpoint on the test split: once, here."""
    result, checkpoint, ckpt_path = _best_checkpoint(grid, best_row["trial_id"], spec, exp_dir)
    out = {"best": {"trial_id": best_row["trial_id"], "config": dict(result.config),
                    spec.metric: float(best_row[f"best_{spec.metric}"]),
                    "epoch": _maybe_int(best_row.get("best_epoch")), "checkpoint": ckpt_path}}
    if ckpt_path is None:
        out["test_error"] = "the best trial left no checkpoint"
        return out
    with local_folder(file_in(exp_dir, report_dir)) as out_dir, _checkpoint_dir(checkpoint, ckpt_path) as ckpt_dir:
        test = evaluate_checkpoint(spec.task, dict(result.config), data, ckpt_dir, out_dir, spec.max_epochs)
    out["test"] = test
    test_metric = test_metric_of(spec.metric)
    if test_metric in test:  # what `ls`, `compare` and the report show, with or without a target
        out["test_metric"] = test_metric
        if spec.target is not None:
            value = test[test_metric]
            out["target_met"] = spec.goal.reached(value, spec.target)
    return out


def test_metric_of(metric: str) -> str:
    """The test split's name for the sweep metric: ``val_acc`` -> ``test_acc``."""
    return "test_" + metric.removeprefix("val_")


def initial_trial(df: pd.DataFrame, spec, enqueued: int = 0) -> dict[str, Any] | None:
    """The trial that ran the space's first ``initial:`` point (the course's own configuration in
    the default spaces), so the winner can be read against it on the same budget. ``enqueued``:
    the ``--enqueue`` points that ``spec.initial`` holds before the space's own."""
    if len(spec.initial) <= enqueued or not len(df):
        return None
    point = spec.initial[enqueued]
    for _, row in df.iterrows():
        if all(_same(row.get(f"config/{k}"), v) for k, v in point.items()):
            best = row.get(f"best_{spec.metric}")
            return {"trial_id": row["trial_id"], "config": point, "status": row["status"],
                    "epochs": int(row["epochs"]), "epoch": _maybe_int(row.get("best_epoch")),
                    spec.metric: None if best is None or pd.isna(best) else float(best)}
    return None  # e.g. the time budget ran out first


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _maybe_int(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)


def _config_of(row) -> dict[str, Any]:
    return {k.removeprefix("config/"): v for k, v in row.items() if k.startswith("config/")}
