"""Re-runs of a sweep's top configs with K seeds, ranked by mean and spread (``--seeds K``).

A sweep picks its winner on one seed per config; with close candidates the luckiest seed wins.
Here the top ``top`` distinct configs of a finished sweep are trained again, each with seeds
0..K-1, for the sweep's full ``max_epochs`` (no early stopping), on the same data (same
``--limit``), and ranked by the mean of each run's best validation value; the spread (sample
standard deviation, min, max) sits beside it. The test split is not touched.

The runs are one small Tune experiment beside the sweep, ``<storage>/<name>-seeds/`` (a grid over
config rank x seed, FIFO, the sweep's per-trial resources, the engine's Tuner; not inside the
sweep's folder, where TensorBoard would mix its trials into the sweep's HParams); the ranking goes
to ``<exp>/seeds.json`` and into the report. ``dlb-tune sweep --seeds K`` runs them as a step after
the sweep (``after_sweep``), on its Ray and data; ``dlb-tune best NAME --seeds K`` on a finished one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
from typing import Any, Callable

import pandas as pd
from ray import tune

from dlb_tune.best import fixed_space_yaml, trial_config
from dlb_tune.compared import DEFAULT_SEEDS, add_seed_runs, compared_lines
from dlb_tune.engine import check_resources, ray_session, tuner
from dlb_tune.experiment import Experiment, load_experiment, write_final, write_seeds
from dlb_tune.storage import ReportError
from dlb_tune.objective import Objective, TrialStatus
from dlb_tune.options import SweepOptions
from dlb_tune.prepare import load_data
from dlb_tune.tasks import portable_name
from dlb_tune.trainable import default_threads, epoch_loop, pick_device, start_trial


def top_configs(exp: Experiment, top: int) -> list[dict[str, Any]]:
    """The ``top`` best non-errored trials with distinct configs, best first."""
    best_col = f"best_{exp.metric}"
    t = exp.trials
    if best_col not in t:
        raise ReportError(f"{exp.path}: results.parquet has no {best_col}")
    t = exp.goal.sort(t[t["status"] != TrialStatus.ERRORED].dropna(subset=[best_col]), best_col)
    out, seen = [], set()
    for _, row in t.iterrows():
        key = json.dumps(trial_config(row), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(_candidate(row, best_col))
        if len(out) == top:
            break
    if not out:
        raise ReportError(f"{exp.path}: no trial reported {exp.metric}; nothing to re-run")
    return out


def configs_of(exp: Experiment, trial_ids: list[str]) -> list[dict[str, Any]]:
    """The given trials' configs, as ``top_configs`` lists them (``compare_by``: each value's best)."""
    rows = exp.trials.set_index("trial_id", drop=False)
    return [_candidate(rows.loc[tid], f"best_{exp.metric}") for tid in trial_ids]


def _candidate(row, best_col: str) -> dict[str, Any]:
    return {"trial_id": row["trial_id"], "sweep_value": float(row[best_col]), "config": trial_config(row)}


def seed_trial(config: dict[str, Any], *, data: Any, configs: list[dict[str, Any]], task_name: str, metric: str,
               mode: str, max_epochs: int, threads: int, use_gpu: bool) -> None:
    """Tune trainable: config ``rank`` of ``configs``, seeded with ``seed``; no checkpoints."""
    task, ctx, _ = start_trial(task_name, configs[int(config["rank"])], data, seed=int(config["seed"]),
                               max_epochs=max_epochs, threads=threads, device=pick_device(use_gpu))
    epoch_loop(task, ctx, metric=metric, mode=mode, start_state=None,
               report=lambda metrics, _: tune.report(metrics), is_reporter=False)


def rerun_seeds(exp: Experiment, seeds: int, top: int = 3, *, data_dir: str | None = None,
                cpus: float | None = None, data: Any = None, echo: Callable[[str], None] = print,
                trial_ids: list[str] | None = None) -> dict[str, Any]:
    """Train the top configs (or those of ``trial_ids``) with ``seeds`` seeds each; write and
    return the ranking.

    ``data``: the sweep's loaded data, when called at the end of a sweep (else loaded again).
    A running Ray (the sweep's) is used as it is.
    """
    if seeds < 2:
        raise ReportError("--seeds needs at least 2 seeds to measure a spread")
    candidates = top_configs(exp, top) if trial_ids is None else configs_of(exp, trial_ids)
    known = {f.name for f in dataclasses.fields(SweepOptions)}
    opts = SweepOptions(**{k: v for k, v in exp.sweep.items() if k in known})
    # One process per run, the sweep's per-trial share: data parallelism is for speed, not for this.
    opts = dataclasses.replace(opts, name=exp.name, storage=str(exp.path.parent), data_dir=data_dir or opts.data_dir,
                               cpus=cpus if cpus is not None else opts.cpus, workers_per_trial=1, ray_train=False)
    if opts.address:  # recorded by whoever wrote the folder: say where the trials will run
        echo(f"Ray: {opts.address} (from sweep.json)")
    spec = exp.spec
    data = load_data(spec, opts) if data is None else data
    which = f"the top {len(candidates)} config(s)" if trial_ids is None else f"{len(candidates)} given config(s)"
    echo(f"re-running {which} of {exp.name} with {seeds} seeds each, "
         f"{spec.max_epochs} epochs, no early stopping")
    with ray_session(opts):
        concurrency, per_trial = check_resources(opts)
        trainable = tune.with_parameters(
            seed_trial, data=data, configs=[c["config"] for c in candidates], task_name=portable_name(spec.task),
            metric=spec.metric, mode=spec.mode, max_epochs=spec.max_epochs,
            threads=default_threads(opts.cpus_per_trial), use_gpu=opts.gpus_per_trial > 0)
        out_dir = exp.seed_runs_dir()
        shutil.rmtree(out_dir, ignore_errors=True)
        grid = tuner(tune.with_resources(trainable, {"cpu": per_trial["cpu"], "gpu": per_trial["gpu"]}),
                     name=out_dir.name, storage=str(out_dir.parent),
                     param_space={"rank": tune.grid_search(list(range(len(candidates)))),
                                  "seed": tune.grid_search(list(range(seeds)))},
                     tune_config=dict(max_concurrent_trials=concurrency, reuse_actors=True),
                     callbacks=[SeedLines(spec.metric, echo)]).fit()
    result = rank(exp, candidates, _runs(grid, spec.goal), seeds)
    result["runs"] = str(out_dir)
    write_seeds(exp.path, result)
    return result


def after_sweep(opts: SweepOptions, echo: Callable[[str], None] = print) -> Callable[[dict[str, Any], Any], None]:
    """The step ``dlb-tune sweep`` runs after its sweep (``sweep.run_sweep(after=...)``), on the
    sweep's Ray and data: with ``--seeds K``, the re-runs of the top configs, whose ranking joins
    ``final.json``. A sweep that compares values (``compare_by``) re-runs each value's best
    instead, ``DEFAULT_SEEDS`` times unless ``--seeds`` says otherwise (``--smoke``: not at all),
    and prints the compared table with its spread."""

    def step(final: dict[str, Any], data: Any) -> None:
        compared = final.get("compared")
        seeds = opts.seeds if opts.seeds is not None else DEFAULT_SEEDS if compared and not opts.smoke else 0
        if seeds < 2:
            return
        exp_dir = final["experiment_dir"]
        ids = [r["trial_id"] for r in compared["rows"] if "trial_id" in r] if compared else None
        if compared:
            echo(f"re-running each {compared['param']}'s best config with {seeds} seeds (--seeds K; 0: none)")
        final["seeds"] = rerun_seeds(load_experiment(exp_dir), seeds, data=data, echo=echo, trial_ids=ids)
        if compared:
            add_seed_runs(compared, final["seeds"]["ranking"])
            for line in compared_lines(final):
                echo(line)
        write_final(exp_dir, final)

    return step


def _runs(grid, goal: Objective) -> pd.DataFrame:
    rows = []
    for r in grid:
        history = r.metrics_dataframe
        value = None
        if r.error is None and history is not None and goal.metric in history:
            value = goal.best(history[goal.metric])
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
    ranking.sort(key=lambda e: (e.get("mean") is None, -exp.goal.sign * e.get("mean", 0.0), e.get("std", 0.0)))
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


class SeedLines(tune.Callback):
    """One line per finished seed run."""

    def __init__(self, metric: str, echo: Callable[[str], None]):
        self.metric, self.echo = metric, echo

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        self.echo(f"  config {trial.config['rank'] + 1} seed {trial.config['seed']}: "
                  f"best {self.metric} {last.get('best_' + self.metric, float('nan')):.4f}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.echo(f"  config {trial.config['rank'] + 1} seed {trial.config['seed']}: ERROR")
