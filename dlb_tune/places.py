"""Where dlb-tune keeps things on this machine: the data folder, the caches, logs and locks.

One per-user folder holds them all: ``$DLB_TUNE_CACHE``, else platformdirs' user cache folder for
``dlb-tune`` (``~/.cache/dlb-tune`` on Linux, under ``$XDG_CACHE_HOME`` when set)::

    data/      the default data folder (``--data-dir`` and ``$DLB_TUNE_DATA`` pick another)
    decoded/   images decoded once into tensors (Grocery Store, CelebA)
    storage/   local copies of experiments kept on object storage, for the reading commands
    logs/      tracebacks of commands that have no experiment folder (private to the user)
    locks/     the lock of an experiment kept on object storage (a bucket has no locks)

This module imports nothing heavy: every command asks it before it knows what else it needs.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DLB_TUNE_DATA"
CACHE_ENV = "DLB_TUNE_CACHE"
APP = "dlb-tune"


def cache_root() -> Path:
    """``$DLB_TUNE_CACHE``, else the per-user cache folder of dlb-tune."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def default_data_dir() -> Path:
    return cache_root() / "data"


def decoded_dir() -> Path:
    return cache_root() / "decoded"


def storage_copies_dir() -> Path:
    return cache_root() / "storage"


def log_dir() -> Path:
    return cache_root() / "logs"


def locks_dir() -> Path:
    return cache_root() / "locks"


def checkout_data_dir(root: Path) -> Path:
    """The data of a checkout's tests, benchmarks and ``make``: ``$DLB_TUNE_DATA``, else
    ``../shared/data`` beside the checkout ``root`` (where the course machine keeps it)."""
    return Path(os.environ.get(DATA_ENV) or root.parent / "shared" / "data")
