"""Where the command line's noise goes: tracebacks and library log lines, kept out of the terminal.

The terminal shows our progress lines and one-line errors. Two things go to a log file instead:

* the traceback of an exception nobody anticipated (``dlb-tune`` prints one line naming the file);
* Ray's own log records during a sweep (e.g. "Saving experiment state to storage ... failed",
  with its traceback): into the experiment folder's log (``experiment.LOG_FILE``).

``--debug`` (``set_debug``) keeps both on the terminal. This module imports nothing heavy: the
command line uses it before it knows whether torch or Ray will be needed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dlb_tune import places
from dlb_tune.storage import shown

_debug = False
_log_file: Path | None = None  # the running sweep's log, once it has one


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def debug() -> bool:
    return _debug


def user_log_dir() -> Path:
    """Per-user folder for logs of commands that have no experiment folder (yet)."""
    return places.log_dir()


def current_log_file() -> Path:
    """The running sweep's log, else a new file in ``user_log_dir()``."""
    if _log_file is not None:
        return _log_file
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return user_log_dir() / f"dlb-tune-{stamp}-{os.getpid()}.log"


def record_crash(exc: BaseException, argv: list[str]) -> Path:
    """Append the command and the traceback of ``exc`` to the current log; returns the file.

    A log of our own (no sweep running) is readable by its user alone, in a folder only they can
    list: tracebacks show paths, options and values."""
    path = current_log_file()
    if path.parent == user_log_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)  # made before with the umask's mode
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        # a URI's user:secret@ never reaches a file (storage refuses such URIs, after this may have run)
        f.write(f"\n{dt.datetime.now().isoformat(timespec='seconds')}  dlb-tune {' '.join(map(shown, argv))}\n")
        f.write("".join(traceback.format_exception(exc)))
    return path


@contextmanager
def library_logs(path: Path | None) -> Iterator[None]:
    """Ray's log records go to ``path`` (the experiment's log) for the length of the block.

    Ray prints through a stream handler on its ``ray`` logger (which does not propagate); that
    handler is swapped for one writing to ``path``, and ``ray.tune`` warnings are let through
    to the file. Nothing changes with ``--debug``, or when there is no local file to write to.
    """
    global _log_file
    if _debug or path is None:
        yield
        return
    ray_logger, tune_logger = logging.getLogger("ray"), logging.getLogger("ray.tune")
    streams = [h for h in ray_logger.handlers if type(h) is not logging.FileHandler
               and isinstance(h, logging.StreamHandler)]
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level, saved_file = tune_logger.level, _log_file
    for h in streams:
        ray_logger.removeHandler(h)
    ray_logger.addHandler(to_file)
    tune_logger.setLevel(logging.WARNING)
    _log_file = path
    try:
        yield
    except BaseException:
        saved_file = path  # the traceback of what ended the sweep goes beside Ray's lines
        raise
    finally:
        ray_logger.removeHandler(to_file)
        to_file.close()
        for h in streams:
            ray_logger.addHandler(h)
        tune_logger.setLevel(level)
        _log_file = saved_file
