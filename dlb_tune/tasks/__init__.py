"""Task registry. Every task registers itself with ``@register``; nothing keeps a list.

Three places hold tasks, all with the same contract (``base.py``):

* the modules of this package, one task each, named as the module;
* installed packages that name a module (or a ``Task`` class) in the entry point group
  ``dlb_tune.tasks`` (``[project.entry-points."dlb_tune.tasks"] mytask = "my_pkg.my_task"``);
* a module the user names with ``--task-module``: a path to a ``.py`` file or a dotted module
  name (``load_task_module``). The experiment folder records it, so ``resume``, ``report`` and
  the other commands import it again.

Names come from this package's module names and the entry points' metadata, so listing tasks and
refusing an unknown one import no task module (nor torch, which they import); ``get_task``
imports the one module it is asked for, when its ``Config`` or training code is needed. The
package's own tasks are not entry points: metadata goes stale (a checkout's ``*.egg-info``, read
before the environment's, hides entry points added since it was written), module names do not.

A ``--task-module`` reaches Ray's worker processes with the task's name: ``portable_name`` is a
``str`` that, unpickled in a worker, imports the module there first, from the same path or
module name, or else from the source text it carries (a cluster node without the file). The
class is not pickled by value: cloudpickle cannot pickle some modules a task's code may name
(``torch.classes`` is picked up by any ``.classes`` attribute). Installed packages (entry
points) must be installed on every node, as any dependency.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from dlb_tune.tasks.base import (_REGISTRY, ConfigError, DataError, Task, TrialContext, TrialError, Trials,
                                  TrialSummary, register)

__all__ = ["ConfigError", "DataError", "ENTRY_POINT_GROUP", "Task", "TaskModuleError", "TrialContext", "TrialError",
           "TrialSummary", "Trials", "all_tasks", "get_task", "is_builtin", "load_task_module", "portable_name",
           "register", "space_file_beside", "task_names", "task_source"]

ENTRY_POINT_GROUP = "dlb_tune.tasks"

_modules: dict[str, str] = {}  # what load_task_module was given -> the name it recorded
_sources: dict[str, str] = {}  # task name -> the recorded module that registered it
_entry_points: dict[str, EntryPoint] | None = None


class TaskModuleError(Exception):
    """A task module or entry point that cannot be imported. One line, for the user."""


def _declared() -> dict[str, EntryPoint]:
    """Task name -> where it lives: this package's modules, then the installed packages' entry
    points (nothing imported)."""
    global _entry_points
    if _entry_points is None:
        _entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        _entry_points.update({m.name: EntryPoint(m.name, f"{__name__}.{m.name}", ENTRY_POINT_GROUP)
                              for m in pkgutil.iter_modules(__path__)
                              if m.name != "base" and not m.name.startswith("_")})
    return _entry_points


def task_names() -> list[str]:
    """Every task name known without importing a task: the entry points and the modules loaded."""
    return sorted(set(_declared()) | set(_REGISTRY))


def task_source(name: str) -> str | None:
    """The module that defines task ``name`` (``my_pkg.my_task``, a .py path), without importing
    it; None for an unknown task."""
    if name in _sources:
        return _sources[name]
    ep = _declared().get(name)
    if ep is not None:
        return ep.module
    return _REGISTRY[name].__module__ if name in _REGISTRY else None


def _load(ep: EntryPoint) -> None:
    try:
        ep.load()  # importing the module runs its @register
    except Exception as e:  # noqa: BLE001 - whatever a third-party import raises: one line
        raise TaskModuleError(f"entry point '{ep.name} = {ep.value}' ({ENTRY_POINT_GROUP}) cannot be "
                              f"imported: {type(e).__name__}: {e}") from e
    if ep.name not in _REGISTRY:
        raise TaskModuleError(f"entry point '{ep.name} = {ep.value}' ({ENTRY_POINT_GROUP}) registers no task "
                              f"'{ep.name}' (a @register'ed Task with name = '{ep.name}')")


def all_tasks() -> dict[str, type[Task]]:
    """Every task, imported (the contract tests, `check-task`): listing names needs ``task_names``."""
    for name in task_names():
        get_task(name)
    return dict(sorted(_REGISTRY.items()))


class UnknownTask(KeyError):
    pass


def check_task_name(name: str) -> None:
    """An unknown task, refused without importing any."""
    if name not in _REGISTRY and name not in _declared():
        raise UnknownTask(f"unknown task '{name}'; known tasks: {', '.join(task_names())} "
                          f"(a task of your own: --task-module path/to/my_task.py)")


def get_task(name: str) -> type[Task]:
    """The task's class; the first call imports its module."""
    check_task_name(name)
    if name not in _REGISTRY:
        _load(_declared()[name])
    return _REGISTRY[name]


# --- tasks from outside the package --------------------------------------------------------------


def load_task_module(ref: str) -> str:
    """Import a task module: a ``.py`` file or a dotted module name. Returns what to record for
    importing it again (the file's absolute path, or the dotted name). Importing twice is a no-op."""
    if ref in _modules:
        return _modules[ref]
    before = dict(_REGISTRY)
    if ref.endswith(".py") or "/" in ref or Path(ref).is_file():
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise TaskModuleError(f"task module not found: {path}")
        _import_file(path)
        recorded = str(path)
    else:
        _import_dotted(ref)
        recorded = ref
    _modules[ref] = _modules[recorded] = recorded
    declared = _declared()  # a task of the package (or an entry point's) that the module imports is not its own
    _sources.update({name: recorded for name, cls in _REGISTRY.items() if before.get(name) is not cls
                     and not (name in declared and declared[name].module == cls.__module__)})
    return recorded


def _import_file(path: Path):
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    if loaded is not None:  # the file's name is taken (a standard module, another task): keep both
        name = f"dlb_tune_task_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's module: its first error, in one line
        del sys.modules[name]
        raise TaskModuleError(f"cannot import {path}: {_where(e, path)}{type(e).__name__}: {e} "
                              f"(run `python {path}` for the traceback)") from e
    return module


def _import_dotted(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise TaskModuleError(f"no module named '{name}' (give a path to a .py file, or a module on "
                                  f"sys.path / PYTHONPATH)") from e
        raise TaskModuleError(f"cannot import {name}: {type(e).__name__}: {e}") from e
    except Exception as e:  # noqa: BLE001
        raise TaskModuleError(f"cannot import {name}: {type(e).__name__}: {e}") from e


def _where(e: Exception, path: Path) -> str:
    """``line N: `` of the deepest frame in the user's file."""
    lines = [f.lineno for f in inspect.getinnerframes(e.__traceback__) if f.filename == str(path)]
    if isinstance(e, SyntaxError) and e.lineno:
        lines.append(e.lineno)
    return f"line {lines[-1]}: " if lines else ""


def is_builtin(task_cls: type[Task]) -> bool:
    return task_cls.__module__.startswith(f"{__name__}.")


def space_file_beside(name: str) -> Path | None:
    """An outside task's default search space: ``<task name>.yaml`` beside the module that defines
    it, found without importing that module (None for the package's own tasks)."""
    source = task_source(name)
    if source is None or source.startswith(f"{__name__}."):
        return None
    if name in _REGISTRY and not is_builtin(_REGISTRY[name]):  # imported already: its file
        return Path(inspect.getfile(_REGISTRY[name])).with_name(f"{name}.yaml")
    if source.endswith(".py"):
        return Path(source).with_name(f"{name}.yaml")
    try:
        spec = importlib.util.find_spec(source)  # imports the parent packages only
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).with_name(f"{name}.yaml")


class _PortableName(str):
    """A task's name that, unpickled in a Ray worker, first imports the module that defines the task."""

    def __reduce__(self):
        ref = _sources[str(self)]
        source = Path(ref).read_text(encoding="utf-8") if ref.endswith(".py") else None
        return _arrive, (str(self), ref, source)


def _arrive(name: str, ref: str, source: str | None) -> str:
    try:
        load_task_module(ref)
    except TaskModuleError:
        if source is None:
            raise
        load_task_module(str(_write_source(ref, source)))
    return name


def _write_source(ref: str, source: str) -> Path:
    """The module's text in a folder of this worker's own, under the module's file name."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="dlb-tune-task-"))
    path = folder / Path(ref).name
    path.write_text(source, encoding="utf-8")
    return path


def portable_name(name: str) -> str:
    """What to hand a Ray trainable as the task's name: a task of the package or of an installed
    package is found by name in every process; one from ``--task-module`` brings its module."""
    get_task(name)
    return _PortableName(name) if name in _sources else name
