"""How values read on a terminal: durations, a trial's searched parameters, lines that fit, an
error in one line.

Shared by the progress lines of a running sweep and the commands that read one back; imports
nothing of the package, so any module may use it.
"""

from __future__ import annotations

from typing import Any

WIDTH = 100  # columns of the terminal every progress and status line must fit


def fit(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[:width - 3] + "..."


def short_config(config: dict[str, Any], searched: list[str]) -> str:
    """The searched parameters only: the constants are the same in every trial."""
    return " ".join(f"{k}={_short(config.get(k))}" for k in searched)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def clock(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def seconds(s: float) -> str:
    """0.44 s, 3.2 s, 45 s, then ``clock``'s 3m05s: a smoke sweep's epochs take under a second."""
    if s < 10:
        return f"{s:.2g} s"
    return f"{s:.0f} s" if s < 60 else clock(s)


def fmt(v: Any) -> str:
    """A value in a table or a line: 4 significant digits for a float, ``-`` for none."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``, what the user sees of an unexpected error."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def error_line(text: str) -> str:
    """The line of a trial's traceback that says what went wrong: Ray wraps the trial's exception,
    so its last line."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "failed"
