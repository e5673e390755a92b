"""``python -m bench checkpoint-figures EXP``: a finished sweep's checkpoint figures drawn again.

A sweep draws its task's ``test_report`` figures once, at its end, with the code of that day. This
draws them again from a trial's kept best checkpoint with today's code (``dlb_tune.checkpoint_figures``:
figures only, no test metric computed; the data limited as the sweep's was), and prints what
``figure_info`` says of each figure (for the vae: each traversal row's change in grey levels). The
winner by default; ``--trial`` for another one (a Pareto model).

    python -m bench checkpoint-figures /path/to/runs/vae-long-98 [--trial ID] [--out DIR]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli import DataDir, benchmark
from bench.common import default_data_dir, say


@benchmark("checkpoint-figures")
def checkpoint_figures_command(
        experiment: Annotated[str, typer.Argument(help="A sweep's folder, or its name under --storage.")],
        trial: Annotated[Optional[str], typer.Option(help="Trial id (default: the winner).")] = None,
        storage: Annotated[Optional[str], typer.Option(help="Where sweeps live (as dlb-tune's).")] = None,
        out: Annotated[Optional[str], typer.Option(help="Folder for the figures (default: "
                                                        "EXP/checkpoint_figures/<trial>).")] = None,
        data_dir: DataDir = None) -> None:
    """A trial's best checkpoint: its task's figures drawn again, and their figure_info printed."""
    from dlb_tune import SweepOptions, checkpoint_figures, load_data, load_experiment, trial_config

    try:
        exp = load_experiment(experiment, storage)
    except Exception as e:  # noqa: BLE001 - no such sweep, or not one: one line, as dlb-tune says it
        raise SystemExit(f"error: {e.args[0] if e.args else e}") from None
    winner = ((exp.final or {}).get("best") or {}).get("trial_id")
    trial = trial or winner
    rows = exp.trials[exp.trials["trial_id"] == trial]
    if trial is None or rows.empty:
        raise SystemExit(f"error: no trial {trial!r} in {exp.path}")
    ckpt = exp.checkpoint(trial) or (((exp.final or {}).get("best") or {}).get("checkpoint") if trial == winner else None)
    if not ckpt or not Path(ckpt).is_dir():
        raise SystemExit(f"error: trial {trial} of {exp.path} kept no checkpoint")
    # the data the sweep had (its --limit or --smoke): its figures rank latents over a whole split
    data = load_data(exp.spec, SweepOptions(task=exp.spec.task, data_dir=data_dir or default_data_dir(),
                                            limit=exp.sweep.get("limit"), smoke=bool(exp.sweep.get("smoke"))))
    folder = Path(out) if out else exp.path / "checkpoint_figures" / trial
    report = checkpoint_figures(exp.spec.task, trial_config(rows.iloc[0]), data, ckpt, folder, exp.spec.max_epochs)
    say(f"{exp.name} trial {trial}, {Path(ckpt).name}: {len(report.get('figures', {}))} figure(s) in {folder}")
    for key, value in (report.get("figure_info") or {}).items():
        print(f"{key}: {json.dumps(value)}")
