"""The on-disk cache of decoded datasets, shared by tasks that decode images once per machine."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def cache_dir() -> Path:
    """``$DLB_TUNE_CACHE``, or ``~/.cache/dlb_tune``."""
    return Path(os.environ.get("DLB_TUNE_CACHE", "~/.cache/dlb_tune")).expanduser()


def load_cached(path: Path) -> Any | None:
    """The cached object at ``path``, or None when absent, truncated or foreign (decode again)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:
        return None


def save_atomic(obj: Any, path: Path) -> None:
    """Write via a temporary file and rename, so concurrent sweeps never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
