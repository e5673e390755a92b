"""The winner of a sweep as a space file with every parameter fixed (``dlb-tune best``): feed it
back with ``--space``, or run it first in another sweep with ``--enqueue``."""

from __future__ import annotations

from typing import Any

from dlb_tune.experiment import Experiment
from dlb_tune.storage import ReportError, to_jsonable
from dlb_tune.show import fmt


def best_config(exp: Experiment) -> dict[str, Any]:
    """The winner's full config: final.json's, else the top row of results.parquet."""
    if exp.final and exp.final.get("best"):
        return dict(exp.final["best"]["config"])
    best_col = f"best_{exp.metric}"
    ok = exp.trials.dropna(subset=[best_col]) if best_col in exp.trials else exp.trials.iloc[0:0]
    if ok.empty:
        raise ReportError(f"{exp.path}: no trial reported {exp.metric}; there is no best config")
    return trial_config(exp.goal.sort(ok, best_col).iloc[0])


def trial_config(row) -> dict[str, Any]:
    """A results.parquet row's config (its ``config/<key>`` columns) as plain values."""
    return {k.removeprefix("config/"): to_jsonable(v) for k, v in row.items() if k.startswith("config/")}


def best_yaml(exp: Experiment) -> str:
    """A search-space file with every parameter fixed to the winner's value (``--space`` reads it)."""
    final = exp.final or {}
    best = final.get("best") or {}
    head = [f"best trial {best.get('trial_id', '?')} of sweep {exp.name}: "
            f"{exp.metric} {fmt(best.get(exp.metric))} at epoch {best.get('epoch', '?')}"]
    test = final.get("test") or {}
    if final.get("test_metric") in test:
        head.append(f"{final['test_metric']} {fmt(test[final['test_metric']])} (test split, evaluated once)")
    head.append(f"checkpoint: {best.get('checkpoint') or exp.checkpoint(best.get('trial_id')) or 'none'}")
    goals = exp.spec.goals()
    if len(goals) > 1:
        head.append(f"picked by {exp.metric} alone, the first of objective {exp.spec.objective} "
                    f"({', '.join(f'{g.metric} {g.mode}' for g in goals)}); its Pareto front: final.json, report.md")
    return fixed_space_yaml(exp, best_config(exp), head)


def trial_yaml(exp: Experiment, trial_id: str) -> str:
    """Any trial's config as a fixed space file, e.g. a Pareto point's or a runner-up's, to train it
    longer (``--space``) or first (``--enqueue``); the winner is ``best_yaml``."""
    df = exp.trials
    rows = df[df["trial_id"] == trial_id] if len(df) else df
    if rows.empty:
        known = ", ".join(df["trial_id"].head(8)) if len(df) else "none"
        raise ReportError(f"{exp.name}: no trial {trial_id!r} (trials: {known}{', ...' if len(df) > 8 else ''})")
    row = rows.iloc[0]
    best_col = f"best_{exp.metric}"
    value = row.get(best_col)
    head = [f"trial {trial_id} of sweep {exp.name}: {exp.metric} {fmt(value)} at epoch {fmt(row.get('best_epoch'))}"]
    winner = ((exp.final or {}).get("best") or {}).get("trial_id")
    head.append("the sweep's winner" if winner == trial_id else
                f"not the winner ({winner or 'none'}); its test split was not read")
    head.append(f"checkpoint: {exp.checkpoint(trial_id) or 'none'}")
    return fixed_space_yaml(exp, trial_config(row), head)


def fixed_space_yaml(exp: Experiment, config: dict[str, Any], comments: list[str]) -> str:
    """The sweep's space file with ``params`` replaced by ``config`` (constants only), 1 sample."""
    import yaml

    spec = exp.spec
    doc: dict[str, Any] = {"task": spec.task, "metric": spec.metric, "mode": spec.mode}
    if spec.target is not None:
        doc["target"] = spec.target
    doc.update(max_epochs=spec.max_epochs, grace_period=spec.grace_period,
               reduction_factor=spec.reduction_factor, num_samples=1)
    doc["params"] = {k: to_jsonable(v) for k, v in config.items()}
    return "".join(f"# {_one_line(c)}\n" for c in comments) + yaml.safe_dump(doc, sort_keys=False)


def _one_line(text: str) -> str:
    """A comment stays one line: a line break in final.json's values (a checkpoint path) would
    start YAML of its own. Such characters are shown escaped, as Python writes them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
