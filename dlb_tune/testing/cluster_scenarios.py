"""What a multi-node sweep's trials report, read from its folder: per trial, each epoch and the
node that ran it; the epochs around a killed node (the autoscaling kill test, bench autoscale)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable


def result_rows(exp: Path) -> dict[str, list[dict]]:
    """trial folder -> the rows Tune has logged to its result.json so far (as the driver saw them)."""
    rows: dict[str, list[dict]] = {}
    for result in exp.glob("trial_*/result.json"):
        for line in result.read_text().splitlines():
            try:
                rows.setdefault(result.parent.name, []).append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    return rows


def history(exp: Path) -> dict[str, list[tuple[int, str]]]:
    """trial folder -> [(epoch, node), ...] as the driver logged them."""
    return {t: [(r["epoch"], r["node_id"]) for r in rows if r.get("node_id")] for t, rows in result_rows(exp).items()}


def epochs_around(trial_history: list[tuple[int, str]], node: str) -> tuple[list[int], list[int]]:
    """The epochs a trial reported on ``node`` (killed) and those it reported elsewhere after."""
    return [e for e, n in trial_history if n == node], [e for e, n in trial_history if n != node]


def wait_until(condition: Callable[[], bool], ceiling_s: float,
               give_up: Callable[[], bool] = lambda: False) -> bool:
    """Poll ``condition`` until it holds (True), ``give_up`` holds or the ceiling passes (False).
    The ceiling only catches a hang: it paces nothing."""
    deadline = time.monotonic() + ceiling_s
    while not condition():
        if give_up() or time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def checkpointed_early(exp: Path, epochs: int) -> tuple[str, str] | None:
    """(trial, node) of a trial with a checkpoint, 2 epochs or more reported and half its epochs
    still to run: a node killed now cuts that trial short (at any load), and a resume from
    scratch, not from the checkpoint, shows (it repeats at least 2 epochs)."""
    for trial, rows in sorted(result_rows(exp).items()):
        if rows and rows[-1].get("node_id") and 2 <= rows[-1]["epoch"] <= epochs // 2 \
                and any((exp / trial).glob("checkpoint_*")):
            return trial, rows[-1]["node_id"]
    return None


def wait_for_victim(exp: Path, epochs: int, ceiling_s: float, give_up: Callable[[], bool]) -> tuple[str, str] | None:
    """The first (trial, node) ``checkpointed_early`` finds, polled until the ceiling or ``give_up``."""
    found: dict[str, tuple[str, str] | None] = {}

    def victim() -> bool:
        found["victim"] = checkpointed_early(exp, epochs)
        return found["victim"] is not None

    wait_until(victim, ceiling_s, give_up)
    return found.get("victim")
