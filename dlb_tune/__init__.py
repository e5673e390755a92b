"""dlb-tune: Ray Tune + Optuna hyperparameter sweeps for classic course models.

The names below are the package's public surface, for code built on it (the benchmarks, a user's
scripts): ``from dlb_tune import SweepOptions, run_sweep``. Each is imported from its module on
first use, so ``import dlb_tune`` (which every ``dlb-tune`` command does) stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
    # the search space, and which value is better
    "SweepSpec": "dlb_tune.space", "SpaceError": "dlb_tune.space", "load_space": "dlb_tune.space",
    "parse_space": "dlb_tune.space", "default_space_file": "dlb_tune.space", "load_yaml": "dlb_tune.space",
    "space_file": "dlb_tune.space_files", "Choice": "dlb_tune.distributions",
    "Uniform": "dlb_tune.distributions", "LogUniform": "dlb_tune.distributions", "Objective": "dlb_tune.objective",
    "TrialStatus": "dlb_tune.objective",
    # tasks
    "Task": "dlb_tune.tasks", "TrialContext": "dlb_tune.tasks", "TrialError": "dlb_tune.tasks",
    "DataError": "dlb_tune.tasks", "all_tasks": "dlb_tune.tasks", "get_task": "dlb_tune.tasks",
    # running a sweep
    "SweepOptions": "dlb_tune.options", "ResourceError": "dlb_tune.options", "prepare_spec": "dlb_tune.prepare",
    "load_data": "dlb_tune.prepare", "run_sweep": "dlb_tune.sweep", "resume_sweep": "dlb_tune.sweep",
    # its Ray side
    "start_ray": "dlb_tune.engine", "ray_session": "dlb_tune.engine", "loopback_only": "dlb_tune.engine",
    "quiet_libraries": "dlb_tune.engine", "check_resources": "dlb_tune.engine", "sweep_tuner": "dlb_tune.engine",
    "tuner": "dlb_tune.engine", "fit": "dlb_tune.engine", "make_searcher": "dlb_tune.engine",
    "make_scheduler": "dlb_tune.engine", "make_sampler": "dlb_tune.search",
    # one trial, outside Tune
    "start_trial": "dlb_tune.trainable", "build_task": "dlb_tune.trainable", "trial_seed": "dlb_tune.trainable",
    "evaluate_checkpoint": "dlb_tune.trainable", "checkpoint_figures": "dlb_tune.trainable",
    # reading a sweep back
    "read_results": "dlb_tune.experiment", "load_experiment": "dlb_tune.experiment",
    "trial_config": "dlb_tune.best",
    # where things are kept
    "places": "dlb_tune.places",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'dlb_tune' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.endswith(f".{name}") else getattr(loaded, name)
    globals()[name] = value  # once: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
