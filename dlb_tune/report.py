"""What to make of a finished sweep: ``report.md`` and its figures in the experiment folder.

Everything here works from the experiment folder alone (``results.parquet``, ``final.json``,
``space.yaml``, ``sweep.json``, ``trial_<id>/progress.csv``): no Ray, no data, no task module.
The figures are ``dlb_tune.figures``'s, the numbers ``dlb_tune.report_numbers``'s.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dlb_tune.compared import compared_lines
from dlb_tune.experiment import REPORT_DIR, REPORT_FILE, TEST_REPORT_DIR, Experiment
from dlb_tune.figures import (param_importance, plot_best_so_far, plot_compared, plot_importance, plot_metric_vs_epoch, plot_parallel,
                              plot_pareto, save, too_few_trials)
from dlb_tune.storage import write_text
from dlb_tune.objective import TrialStatus
from dlb_tune.report_numbers import summary_row
from dlb_tune.show import fmt, seconds

# --- report.md ---------------------------------------------------------------------------------


def write_report(exp: Experiment) -> tuple[Path, list[Path]]:
    """``report.md`` and its figures (``report/*.png``) in the experiment folder."""
    fig_dir = exp.path / REPORT_DIR
    shutil.rmtree(fig_dir, ignore_errors=True)
    fig_dir.mkdir()
    importance = param_importance(exp)
    plots = {
        "metric_vs_epoch": plot_metric_vs_epoch(exp),
        "best_so_far": plot_best_so_far(exp),
        "parallel_coordinates": plot_parallel(exp, importance),
        "param_importance": plot_importance(exp, importance),
        "pareto_front": plot_pareto(exp),
        "compared": plot_compared(exp),
    }
    figures = {k: save(fig, fig_dir / f"{k}.png") for k, fig in plots.items() if fig is not None}
    task_figs = sorted((exp.path / TEST_REPORT_DIR).glob("*.png"))
    path = exp.path / REPORT_FILE
    write_text(path, _markdown(exp, figures, importance, task_figs))
    return path, list(figures.values()) + task_figs


def upload_report(exp: Experiment, files: list[Path], uri: str) -> int:
    """The report of a stored sweep, written into its local copy, sent to the store beside the
    results (else it stays on this machine); an earlier report's figures go, as they do locally."""
    from dlb_tune import storage

    fs, root = storage.filesystem(uri)
    try:
        fs.delete_dir_contents(f"{root}/{REPORT_DIR}", missing_dir_ok=True)
    except OSError as e:
        raise storage.StorageError(f"{storage.shown(uri)}: cannot replace {REPORT_DIR}/: {e}") from None
    return storage.upload(exp.path, uri, files)


def _course_section(exp: Experiment) -> list[str]:
    """The space's first ``initial:`` point (the course's or the paper's configuration in most
    shipped spaces, an earlier winner in cnn_small), run on the same budget as the winner."""
    course = (exp.final or {}).get("course")
    if not course:
        return []
    return ["## Initial point (the space's first `initial:`)", "",
            f"Trial `{course['trial_id']}`, {exp.metric} {fmt(course.get(exp.metric))} at epoch {course.get('epoch')}"
            f"{_how_it_ended(course)}.", "",
            *_md_table(["parameter", "value"], [[k, fmt(v)] for k, v in course["config"].items()]), ""]


def _pareto_model_section(exp: Experiment) -> list[str]:
    """The Pareto trial best on the task's chosen objective (``finish.pareto_figures``): its figures."""
    drawn = (exp.final or {}).get("pareto_figures")
    if not drawn:
        return []
    head = [f"## The Pareto model with the highest `{drawn['metric']}`", "",
            f"Trial `{drawn['trial_id']}`{_how_it_ended(drawn)}, "
            f"{drawn['metric']} {fmt(drawn.get('value'))}, the highest "
            f"{_among(drawn)}; its best checkpoint's figures "
            f"(drawn from the test split; no test metric computed for it).", ""]
    if drawn.get("error"):
        return head + [f"No figures: {drawn['error']}.", ""]
    return head + [f"![{name}]({drawn['folder']}/{file})" for name, file in (drawn.get("figures") or {}).items()] + [""]


def _how_it_ended(trial: dict) -> str:
    """" (completed after N epochs)"; nothing for a final.json written before it said so."""
    if trial.get("status") is None or trial.get("epochs") is None:
        return ""
    return f" ({TrialStatus(trial['status']).words} after {trial['epochs']} epochs)"


def _among(drawn: dict) -> str:
    return f"among the Pareto trials ({drawn['among']})" if drawn.get("among") else "on the Pareto front"


def _rejected_line(final: dict) -> list[str]:
    """Configurations a space's ``max_params`` refused before they trained (none without one)."""
    rejected = final.get("trials", {}).get("rejected")
    return [] if rejected is None else [f"- {rejected} configuration(s) over max_params {final['max_params']} "
                                        f"rejected before training"]


def _markdown(exp: Experiment, figures: dict[str, Path], importance, task_figs: list[Path]) -> str:
    final = exp.final or {}
    lines = [f"# Sweep `{exp.name}`: task `{exp.spec.task}`", ""]
    lines += headline(exp) + [""]
    row = summary_row(exp)
    lines += [
        f"- sampler `{row['sampler']}`, scheduler `{row['scheduler']}`, metric `{exp.metric}` ({exp.spec.mode}), "
        f"up to {exp.spec.max_epochs} epochs",
        f"- trials: {row['trials']} ({row['completed']} completed, {row['stopped_early']} stopped early by ASHA, "
        f"{row['cut_by_budget']} cut by the time budget, {row['incomplete']} incomplete, {row['errored']} errored); "
        f"{row['trial_epochs']} trial-epochs",
        *_rejected_line(final),
        f"- wall time: {fmt(row['wall_s'])} s; the winner's validation level ({fmt(row['best_val'])}) was "
        f"first reached after " + ("-" if row["time_to_best_val_s"] is None else seconds(row["time_to_best_val_s"])),
        "",
    ]
    best = final.get("best")
    if best:
        lines += ["## Best configuration", "",
                  f"Trial `{best['trial_id']}`, {exp.metric} {fmt(best.get(exp.metric))} at epoch {best.get('epoch')}; "
                  f"checkpoint `{best.get('checkpoint')}`. `dlb-tune best {exp.name}` prints it as a space file.", ""]
        lines += _md_table(["parameter", "value"], [[k, fmt(v)] for k, v in best["config"].items()]) + [""]
    lines += _compared_section(exp) + _course_section(exp) + _plan_section(exp) + _seeds_section(exp)
    titles = {
        "metric_vs_epoch": f"{exp.metric} per epoch (dashed, ending in x: stopped early by ASHA; grey verticals: ASHA rungs)",
        "best_so_far": "Best so far against wall time",
        "parallel_coordinates": "Parameters against the metric",
        "param_importance": "Parameter importance (fANOVA)",
        "pareto_front": "Pareto front",
        "compared": "The compared values on equal terms",
    }
    for key, path in figures.items():
        lines += [f"## {titles[key]}", "", f"![{key}]({REPORT_DIR}/{path.name})", ""]
        if key == "pareto_front":
            lines += _pareto_model_section(exp)
        if key == "param_importance":
            lines += [f"- {imp.label} ({imp.trials}): " + ", ".join(
                f"{k} {v:.2f} ({imp.low[k]:.2f}-{imp.high[k]:.2f})" for k, v in imp.mean.items()) for imp in importance]
            lines.append("")
    if "param_importance" not in figures:
        lines += [f"## {titles['param_importance']}", "", too_few_trials(exp) + ".", ""]
    if task_figs:
        lines += ["## The task's figures (best checkpoint, test split)", ""]
        lines += [f"![{p.stem}]({TEST_REPORT_DIR}/{p.name})" for p in task_figs] + [""]
    lines += ["## Trials", ""] + _trials_table(exp) + [""]
    return "\n".join(lines)


def headline(exp: Experiment) -> list[str]:
    final = exp.final or {}
    test, metric = final.get("test") or {}, final.get("test_metric")
    if exp.in_progress:  # "running: N of M trials finished", from what the trials wrote so far
        return [f"**{exp.progress_line()}**; the test split is evaluated once, when the sweep ends"]
    if not test:
        reason = final.get("test_error") or "no test evaluation in final.json (interrupted sweep?)"
        return [f"**Test result: none** ({reason})"]
    value = test.get(metric) if metric else None
    if value is None or exp.spec.target is None:
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in test.items() if isinstance(v, (int, float)))
        return [f"**Test result** (best checkpoint, evaluated once): {shown}; no target set"]
    op = exp.goal.at_least
    verdict = "**met**" if final.get("target_met") else "**NOT met**"
    return [f"**Test result: {metric} = {value:.4f}** against target {op} {exp.spec.target}: {verdict} "
            f"(best checkpoint, evaluated once on the test split)"]


def _plan_section(exp: Experiment) -> list[str]:
    plan = exp.plan()
    if not plan:
        return []
    row = summary_row(exp)
    hist = exp.history()
    actual_epoch = float(hist["epoch_s"].mean()) if "epoch_s" in hist and len(hist) else None
    est = plan["estimate"]
    rows = [
        ["trial-epochs", f"{est['trial_epochs']:.0f} ({est['trial_epochs_p10']:.0f}-{est['trial_epochs_p90']:.0f})",
         fmt(row["trial_epochs"])],
        ["seconds per epoch (mean)", f"{est['epoch_s_mean']:.2f}", fmt(actual_epoch)],
        ["wall time, s", f"{est['wall_s']:.0f} ({est['wall_s_p10']:.0f}-{est['wall_s_p90']:.0f})",
         "-" if row["wall_s"] is None else f"{row['wall_s']:.1f}"],
    ]
    return ["## Plan against actual", "",
            f"`dlb-tune plan` before the sweep ({plan.get('created', '?')}; {len(plan.get('corners', []))} "
            f"calibrated corner(s), {plan['concurrency']} trial(s) at a time). Ranges: 10th-90th percentile "
            f"of the ASHA simulation.", ""] + _md_table(["", "estimate", "actual"], rows) + [""]


def _compared_section(exp: Experiment) -> list[str]:
    """``compare_by``: the table that answers the question, as the summary prints it."""
    compared = (exp.final or {}).get("compared")
    if not compared:
        return []
    return [f"## Compared by `{compared['param']}`", "", "```", *compared_lines(exp.final), "```", ""]


def _seeds_section(exp: Experiment) -> list[str]:
    seeds = exp.seeds()
    if not seeds:
        return []
    head = ["rank", "original trial", f"mean {exp.metric}", "std", "min", "max", "seeds", "config"]
    rows = [[r["rank"], r["trial_id"], f"{r['mean']:.4f}", f"{r['std']:.4f}", f"{r['min']:.4f}", f"{r['max']:.4f}",
             len(r["values"]), " ".join(f"{k}={fmt(v)}" for k, v in r["searched"].items())] for r in seeds["ranking"]]
    return [f"## Top configurations re-run with {seeds['seeds']} seeds", "",
            f"Best validation {exp.metric} of each seed's run, ranked by mean.", ""] + _md_table(head, rows) + [""]


def _trials_table(exp: Experiment, top: int = 20) -> list[str]:
    best_col = f"best_{exp.metric}"
    params = exp.spec.searched()
    head = ["trial", "status", "epochs", best_col] + params
    rows = []
    for _, r in exp.trials.head(top).iterrows():
        # numpy's float64 is a float and its integers print as ints: _fmt takes them as they are
        rows.append([r["trial_id"], r["status"], r["epochs"], fmt(r.get(best_col))]
                    + [fmt(r.get(f"config/{p}")) for p in params])
    more = [f"({len(exp.trials) - top} more in results.parquet)"] if len(exp.trials) > top else []
    return _md_table(head, rows) + more


def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v):
        return str(v).replace("|", "\\|")

    return (["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])
