"""Task registry. Every module in this package registers its task with ``@register``;
modules are discovered, so adding a task touches no list."""

from __future__ import annotations

import importlib
import pkgutil

from dlb_tune.tasks.base import (_REGISTRY, ConfigError, DataError, Task, TrialContext, TrialError, Trials,
                                  TrialSummary, register)

__all__ = ["ConfigError", "DataError", "Task", "TrialContext", "TrialError", "TrialSummary", "Trials", "all_tasks",
           "get_task", "register"]

_loaded = False


def _discover() -> None:
    global _loaded
    if _loaded:
        return
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    _loaded = True


def all_tasks() -> dict[str, type[Task]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


class UnknownTask(KeyError):
    pass


def get_task(name: str) -> type[Task]:
    tasks = all_tasks()
    if name not in tasks:
        raise UnknownTask(f"unknown task '{name}'; known tasks: {', '.join(tasks)}")
    return tasks[name]
