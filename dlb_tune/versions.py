"""``dlb-tune --version``: this project's version and its key dependencies', read from package
metadata (importing torch or Ray just to ask would take seconds)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PROJECT = "dlb-tune"
KEY_DEPENDENCIES = ("ray", "torch", "optuna", "pyarrow", "tensorboard", "typer")


def installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def version_lines() -> list[str]:
    lines = [f"{PROJECT} {installed(PROJECT)}"]
    lines += [f"  {name:12} {installed(name)}" for name in KEY_DEPENDENCIES]
    lines.append(f"  {'python':12} {platform.python_version()}")
    return lines
