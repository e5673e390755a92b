"""``dlb-tune best NAME --seeds K``: re-run the top configs with K seeds, rank by mean and spread.

A sweep picks its winner on one seed per config; with close candidates the luckiest seed wins.
Here the top ``top`` distinct configs of a finished sweep are trained again, each with seeds
0..K-1, for the sweep's full ``max_epochs`` (no early stopping), on the same data (same
``--limit``), and ranked by the mean of each run's best validation value; the spread (sample
standard deviation, min, max) sits beside it. The test split is not touched.

The runs are one small Tune experiment beside the sweep, ``<storage>/<name>-seeds/`` (a grid over
config rank x seed, FIFO, the sweep's per-trial resources; not inside the sweep's folder, where
TensorBoard would mix its trials into the sweep's HParams); the ranking goes to
``<exp>/seeds.json`` and into the report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
from typing import Any, Callable

import pandas as pd

from dlb_tune.experiment import Experiment, ReportError, load_experiment, to_jsonable, write_final, write_seeds
from dlb_tune.report import fixed_space_yaml
from dlb_tune.sweep import SweepOptions, check_resources, load_data, ray_session, sweep_session, trial_dirname
from dlb_tune.tasks import portable_name
from dlb_tune.trainable import default_threads, epoch_loop, pick_device, start_trial

# Ray is imported inside the functions that use it: `dlb-tune best` without --seeds never needs it.


def top_configs(exp: Experiment, top: int) -> list[dict[str, Any]]:
    """The ``top`` best non-errored trials with distinct configs, best first."""
    best_col = f"best_{exp.metric}"
    t = exp.trials
    if best_col not in t:
        raise ReportError(f"{exp.path}: results.parquet has no {best_col}")
    t = t[t["status"] != "errored"].dropna(subset=[best_col])
    t = t.sort_values(best_col, ascending=exp.spec.mode == "min")
    out, seen = [], set()
    for _, row in t.iterrows():
        config = {k.removeprefix("config/"): to_jsonable(v) for k, v in row.items() if k.startswith("config/")}
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append({"trial_id": row["trial_id"], "sweep_value": float(row[best_col]), "config": config})
        if len(out) == top:
            break
    if not out:
        raise ReportError(f"{exp.path}: no trial reported {exp.metric}; nothing to re-run")
    return out


def seed_trial(config: dict[str, Any], *, data: Any, configs: list[dict[str, Any]], task_name: str, metric: str,
               mode: str, max_epochs: int, threads: int, use_gpu: bool) -> None:
    """Tune trainable: config ``rank`` of ``configs``, seeded with ``seed``; no checkpoints."""
    from ray import tune

    task, ctx, _ = start_trial(task_name, configs[int(config["rank"])], data, seed=int(config["seed"]),
                               max_epochs=max_epochs, threads=threads, device=pick_device(use_gpu))
    epoch_loop(task, ctx, metric=metric, mode=mode, start_state=None,
               report=lambda metrics, _: tune.report(metrics), is_reporter=False)


def rerun_seeds(exp: Experiment, seeds: int, top: int = 3, *, data_dir: str | None = None,
                cpus: float | None = None, data: Any = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the top configs with ``seeds`` seeds each; write and return the ranking.

    ``data``: the sweep's loaded data, when called at the end of a sweep (else loaded again).
    A running Ray (the sweep's) is used as it is.
    """
    from ray import tune

    if seeds < 2:
        raise ReportError("--seeds needs at least 2 seeds to measure a spread")
    candidates = top_configs(exp, top)
    known = {f.name for f in dataclasses.fields(SweepOptions)}
    opts = SweepOptions(**{k: v for k, v in exp.sweep.items() if k in known})
    # One process per run, the sweep's per-trial share: data parallelism is for speed, not for this.
    single = {"workers_per_trial": 1, **({"ray_train": False} if "ray_train" in known else {})}
    opts = dataclasses.replace(opts, name=exp.name, storage=str(exp.path.parent), data_dir=data_dir or opts.data_dir,
                               cpus=cpus if cpus is not None else opts.cpus, **single)
    if opts.address:  # recorded by whoever wrote the folder: say where the trials will run
        echo(f"Ray: {opts.address} (from sweep.json)")
    spec = exp.spec
    data = load_data(spec, opts) if data is None else data
    echo(f"re-running the top {len(candidates)} config(s) of {exp.name} with {seeds} seeds each, "
         f"{spec.max_epochs} epochs, no early stopping")
    with ray_session(opts):
        concurrency, per_trial = check_resources(opts)
        trainable = tune.with_parameters(
            seed_trial, data=data, configs=[c["config"] for c in candidates], task_name=portable_name(spec.task),
            metric=spec.metric, mode=spec.mode, max_epochs=spec.max_epochs,
            threads=default_threads(opts.cpus_per_trial), use_gpu=opts.gpus_per_trial > 0)
        out_dir = exp.seed_runs_dir()
        shutil.rmtree(out_dir, ignore_errors=True)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": per_trial["cpu"], "gpu": per_trial["gpu"]}),
            param_space={"rank": tune.grid_search(list(range(len(candidates)))),
                         "seed": tune.grid_search(list(range(seeds)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=out_dir.name, storage_path=str(out_dir.parent), verbose=0,
                                      callbacks=[_Lines(spec.metric, echo)]),
        )
        grid = tuner.fit()
    result = rank(exp, candidates, _runs(grid, spec.metric, spec.mode), seeds)
    result["runs"] = str(out_dir)
    write_seeds(exp.path, result)
    return result


def sweep_with_seeds(opts: SweepOptions, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """``dlb-tune sweep [--seeds K]``: the sweep, then (K > 1) its top configs re-run with K seeds
    on the sweep's Ray and data; the ranking joins ``final.json``."""
    with sweep_session(opts, echo) as (final, data):
        if opts.seeds > 1 and not final.get("interrupted"):
            exp_dir = final["experiment_dir"]
            final["seeds"] = rerun_seeds(load_experiment(exp_dir), opts.seeds, data=data, echo=echo)
            write_final(exp_dir, final)
    return final


def _runs(grid, metric: str, mode: str) -> pd.DataFrame:
    rows = []
    for r in grid:
        history = r.metrics_dataframe
        value = None
        if r.error is None and history is not None and metric in history:
            series = history[metric].dropna()
            value = float(series.max() if mode == "max" else series.min()) if len(series) else None
        rows.append({"rank": int(r.config["rank"]), "seed": int(r.config["seed"]), "value": value,
                     "error": None if r.error is None else str(r.error).strip().splitlines()[-1][:200]})
    return pd.DataFrame(rows)


def rank(exp: Experiment, candidates: list[dict[str, Any]], runs: pd.DataFrame, seeds: int) -> dict[str, Any]:
    """Mean, sample std, min and max of the best value per seed; best mean first, ties by spread."""
    searched = exp.spec.searched()
    ranking = []
    for i, cand in enumerate(candidates):
        mine = runs[runs["rank"] == i].sort_values("seed")
        values = [v for v in mine["value"] if v is not None and not (isinstance(v, float) and math.isnan(v))]
        entry = {"trial_id": cand["trial_id"], "sweep_value": cand["sweep_value"], "values": values,
                 "failed_seeds": int(len(mine) - len(values)),
                 "searched": {k: cand["config"].get(k) for k in searched}, "config": cand["config"]}
        if values:
            entry.update(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else 0.0,
                         min=min(values), max=max(values))
        ranking.append(entry)
    sign = -1 if exp.spec.mode == "max" else 1
    ranking.sort(key=lambda e: (e.get("mean") is None, sign * e.get("mean", 0.0), e.get("std", 0.0)))
    for i, e in enumerate(ranking, 1):
        e["rank"] = i
    return {"metric": exp.metric, "mode": exp.spec.mode, "seeds": seeds, "max_epochs": exp.spec.max_epochs,
            "ranking": ranking}


def ranking_lines(result: dict[str, Any]) -> list[str]:
    m = result["metric"]
    lines = [f"{'rank':>4}  {'trial':>10}  {'sweep ' + m:>14}  {'mean':>8}  {'std':>8}  {'min':>8}  {'max':>8}  config"]
    for e in result["ranking"]:
        cfg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in e["searched"].items())
        if "mean" not in e:
            lines.append(f"{e['rank']:>4}  {e['trial_id']:>10}  {e['sweep_value']:>14.4f}  every seed failed  {cfg}")
            continue
        lines.append(f"{e['rank']:>4}  {e['trial_id']:>10}  {e['sweep_value']:>14.4f}  {e['mean']:>8.4f}  "
                     f"{e['std']:>8.4f}  {e['min']:>8.4f}  {e['max']:>8.4f}  {cfg}")
    return lines


def seed_yaml(exp: Experiment, result: dict[str, Any]) -> str:
    """The config ranked first over seeds, as a space file with every parameter fixed."""
    first = result["ranking"][0]
    if "mean" not in first:
        raise ReportError("every seed run failed; see the errors above")
    m, k = result["metric"], result["seeds"]
    head = [f"ranked first of {len(result['ranking'])} config(s) by mean best {m} over {k} seeds: "
            f"{first['mean']:.4f} +- {first['std']:.4f} (min {first['min']:.4f}, max {first['max']:.4f})",
            f"sweep trial {first['trial_id']}: {m} {first['sweep_value']:.4f} on its one seed",
            f"checkpoint (sweep trial): {exp.checkpoint(first['trial_id']) or 'none'}"]
    return fixed_space_yaml(exp, first["config"], head)


class _Lines:
    """A Tune callback: one line per finished seed run."""

    def __new__(cls, metric: str, echo: Callable[[str], None]):
        from ray import tune

        class _Cb(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                last = trial.last_result or {}
                echo(f"  config {trial.config['rank'] + 1} seed {trial.config['seed']}: "
                     f"best {metric} {last.get('best_' + metric, float('nan')):.4f}")

            def on_trial_error(self, iteration, trials, trial, **info):
                echo(f"  config {trial.config['rank'] + 1} seed {trial.config['seed']}: ERROR")

        return _Cb()
