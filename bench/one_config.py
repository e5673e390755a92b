"""``python -m bench one-config TASK``: one config trained for N epochs on one thread, no Ray.

For ablations behind a space file's defaults (does a regulariser pay within the sweep's epochs?):
the task's own training code on its full training split, the validation metric after every
epoch, the test split never read. Configs differ from the task's defaults by ``--set``; each run
appends a JSON line (config, per-epoch metrics, seconds) to ``--out``.

    python -m bench one-config fcn --epochs 20 --set hidden_size=1024 --set num_layers=2 --set shift=2
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli import DataDir, benchmark
from bench.common import RESULTS, command_line, default_data_dir, jsonable, loadavg, say


@benchmark("one-config")
def one_config(task: Annotated[str, typer.Argument(help="A registered task (dlb-tune tasks).")],
               sets: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, a config field.")] = None,
               epochs: Annotated[int, typer.Option(help="Epochs (the learning-rate schedule spans them).")] = 20,
               seed: Annotated[int, typer.Option(help="Seeds the initial weights and every draw.")] = 0,
               data_dir: DataDir = None,
               out: Annotated[str, typer.Option(help="JSON lines, one per run, appended.")] =
               str(RESULTS / "one_config.jsonl")) -> None:
    """One config trained for N epochs on one thread, validation metric per epoch (no Ray, no test split)."""
    import torch

    from dlb_tune import get_task, load_yaml, start_trial

    task_cls = get_task(task)
    given = {k: load_yaml(v) for k, _, v in (s.partition("=") for s in sets or [])}  # 1e-5 a number, as in --set
    defaults = {f.name: f.default for f in dataclasses.fields(task_cls.Config)}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise typer.BadParameter(f"not fields of {task}'s config: {', '.join(unknown)}", param_hint="--set")
    # an int where the default is a float (lr=1) is that float; any other mismatch is refused
    given = {k: float(v) if type(defaults[k]) is float and type(v) is int else v for k, v in given.items()}
    wrong = [f"{k}={v!r}" for k, v in given.items() if type(v) is not type(defaults[k])]
    if wrong:
        raise typer.BadParameter(f"not of the field's type: {', '.join(wrong)}", param_hint="--set")
    config = task_cls.Config(**given)
    task_cls.check_config(config)
    data = task_cls.load_data(Path(data_dir or default_data_dir()), config)
    # as a trial on one CPU of a default sweep: one thread, seeded, built as trials are
    trial, _, _ = start_trial(task, given, data, seed=seed, max_epochs=epochs, threads=1, device=torch.device("cpu"))
    start, load, rows = time.time(), loadavg(), []
    for epoch in range(epochs):
        train = trial.train_epoch(epoch)
        val = trial.evaluate("val")
        rows.append({"epoch": epoch + 1, "seconds": round(time.time() - start, 1),
                     **{f"train_{k}": v for k, v in train.items()}, **{f"val_{k}": v for k, v in val.items()}})
        say(f"{task} epoch {epoch + 1}/{epochs}: " + "  ".join(f"val_{k} {v:.4f}" for k, v in val.items())
            + f"  {rows[-1]['seconds']:.0f}s")
    record = {"task": task, "set": given, "config": dataclasses.asdict(config), "epochs": epochs, "seed": seed,
              "command": command_line(), "load": [load, loadavg()], "rows": rows}
    with open(out, "a") as f:
        f.write(json.dumps(jsonable(record)) + "\n")
    say(f"appended to {out}")
