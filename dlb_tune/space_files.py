"""Space files by name: ``--space cnn_small`` as well as a path, and each task's other shipped
spaces (``<task>_<name>.yaml`` beside ``<task>.yaml``), which ``dlb-tune tasks`` lists."""

from __future__ import annotations

from pathlib import Path

from dlb_tune.space import builtin_spaces_dir, default_space_file


def space_file(task: str, space: str | None = None) -> Path:
    """``--space``: a file, or the name of one of the package's own (``cnn_small``: a second
    space for a task, with no path to remember); None: the task's default file."""
    if space is None:
        return default_space_file(task)
    named = builtin_spaces_dir() / f"{space}.yaml"
    if not Path(space).exists() and "/" not in space and named.is_file():
        return named
    return Path(space)


def other_spaces(task: str) -> list[Path]:
    """The package's other space files for ``task``: ``<task>_<name>.yaml`` beside its default one."""
    return sorted(builtin_spaces_dir().glob(f"{task}_*.yaml"))
