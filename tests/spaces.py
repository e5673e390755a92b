"""Shipped search spaces, shrunk for tests: the file a user sweeps, with only its size changed.

Tests start from ``search_spaces/<task>.yaml`` as it ships and change what a quick run must
(trials, epochs, rungs, a size-like parameter fixed or narrowed, the way ``--set`` would), so a
change to a shipped file is run by the tests that depend on it. A test that writes a space of
its own does so because it is about a space feature the shipped files lack, and says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dlb_tune.distributions import parse_distribution
from dlb_tune.space_files import space_file

SIZES = ("num_samples", "max_epochs", "grace_period", "reduction_factor", "time_budget_s", "max_params")


def shipped(task: str, space: str | None = None) -> dict[str, Any]:
    """The task's shipped space file (or the shipped one named ``space``, e.g. cnn_small), as YAML reads it."""
    return yaml.safe_load(space_file(task, space).read_text())


def shrunk(task: str, path: Path, params: dict[str, Any] | None = None, space: str | None = None,
           **sizes: Any) -> Path:
    """The shipped space of ``task`` (``space``: another shipped one) written to ``path``, with
    ``sizes`` (``num_samples``, ``max_epochs``, ``grace_period``, ``reduction_factor``,
    ``time_budget_s``, ``max_params``; None drops the key) and ``params`` in place of the shipped
    values (as ``--set`` does). ``initial:`` points keep what still lies inside the space; a
    point left naming a value outside it is dropped."""
    unknown = set(sizes) - set(SIZES)
    assert not unknown, f"not a size: {unknown}; change parameters through params="
    raw = shipped(task, space)
    for key, value in sizes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    raw["params"] = {**raw["params"], **(params or {})}
    changed = {k: parse_distribution(v, k) for k, v in (params or {}).items() if isinstance(v, dict)}
    points = [p for p in raw.get("initial") or [] if all(k not in p or d.contains(p[k]) for k, d in changed.items())]
    raw["initial"] = points or None
    path.write_text(yaml.safe_dump({k: v for k, v in raw.items() if v is not None}, sort_keys=False))
    return path

