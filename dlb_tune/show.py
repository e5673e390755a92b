"""How values read on a terminal: durations, a trial's searched parameters, tables and lines that
fit, an error in one line.

Width: the terminal's when stdout is one; piped or in CI, $COLUMNS, else 80 columns of plain text
(no colour, no box), so logs and scripts read what a terminal shows. Tables go through rich,
imported when one is printed; a column of names or numbers is never cut, other text wraps at
spaces.

Shared by the progress lines of a running sweep and the commands that read one back; imports
nothing of the package, so any module may use it.
"""

from __future__ import annotations

import shutil
from typing import Any, Iterable, Sequence

PIPED_WIDTH = 80  # columns when stdout is no terminal and $COLUMNS is unset


def width() -> int:
    """Columns to fit: $COLUMNS, else the terminal's, else ``PIPED_WIDTH``."""
    return shutil.get_terminal_size((PIPED_WIDTH, 24)).columns


def fit(line: str, columns: int | None = None) -> str:
    """One line cut to the width at a space, ``...`` marking the cut (the whole line goes to a log)."""
    columns = columns or width()
    if len(line) <= columns:
        return line
    cut = line[:columns - 3]
    head = cut.rsplit(" ", 1)[0] if " " in cut.strip() else cut
    return head.rstrip() + "..."


def wrapped(line: str, columns: int | None = None, indent: str = "    ") -> list[str]:
    """One line wrapped at spaces to the width, continuation lines indented."""
    import textwrap

    columns = columns or width()
    return textwrap.wrap(line, columns, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) or [""]


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, whole: Iterable[str] = (),
          right: Iterable[str] = (), columns_wide: int | None = None, repeat: int = 1) -> list[str]:
    """Rows under a header, two spaces between columns, fitted to ``columns_wide`` (default: the
    terminal's width). ``whole``: columns never cut (names, numbers); the others wrap at spaces.
    Columns that cannot all fit side by side go in blocks, one under the other, each repeating
    the first ``repeat`` columns (as a trial's id)."""
    rows = [[fmt(v) for v in row] for row in rows]
    fit_in = columns_wide or width()
    whole, right = set(whole), set(right)
    need = [max([len(name)] + [len(r[i]) for r in rows]) if name in whole else _least(name, [r[i] for r in rows])
            for i, name in enumerate(columns)]
    blocks, block = [], list(range(min(repeat, len(columns))))
    for i in range(len(block), len(columns)):
        if len(block) > repeat and sum(need[j] + 2 for j in block) + need[i] > fit_in:
            blocks.append(block)
            block = list(range(repeat))
        block.append(i)
    blocks.append(block)
    lines: list[str] = []
    for block in blocks:
        lines += ([""] if lines else []) + _block([columns[i] for i in block], [[r[i] for i in block] for r in rows],
                                                  whole, right, fit_in)
    return lines


MIN_WRAPPED = 20  # columns a column of wrapped text keeps at the least, when its words are longer


def _least(header: str, cells: list[str]) -> int:
    """The narrowest a wrapped column goes: its longest word, up to ``MIN_WRAPPED``."""
    return min(MIN_WRAPPED, max(len(w) for text in [header, *cells] for w in text.split() or [""]))


def _block(columns: list[str], rows: list[list[str]], whole: set[str], right: set[str], fit_in: int) -> list[str]:
    from rich.table import Table

    natural = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(columns)]
    least = [n if name in whole else _least(name, [r[i] for r in rows]) for i, (name, n) in enumerate(zip(columns, natural))]
    widths = _share(natural, least, fit_in - 2 * (len(columns) - 1))
    t = Table(box=None, pad_edge=False, show_edge=False, header_style=None, show_header=True)
    for name, w in zip(columns, widths):
        t.add_column(name, width=w, no_wrap=name in whole, overflow="fold",
                     justify="right" if name in right else "left")
    for row in rows:
        t.add_row(*row)
    return rendered(t, fit_in)


def _share(natural: list[int], least: list[int], room: int) -> list[int]:
    """Column widths within ``room``: each its natural width if all fit, else its least plus a
    share of what is left, in proportion to how much more it would take."""
    if sum(natural) <= room:
        return natural
    spare, want = max(0, room - sum(least)), [n - m for n, m in zip(natural, least)]
    total = sum(want) or 1
    return [m + spare * w // total for m, w in zip(least, want)]


def rendered(renderable: Any, columns: int | None = None) -> list[str]:
    """What rich prints of ``renderable`` at the width, as plain lines (no colour codes)."""
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=columns or width(), color_system=None, highlight=False, markup=False,
            emoji=False).print(renderable)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def short_config(config: dict[str, Any], searched: list[str]) -> str:
    """The searched parameters only: the constants are the same in every trial. With none searched
    (a fixed space, as `best -o` writes for a long run), every parameter: they are what was run."""
    return " ".join(f"{k}={_short(config.get(k))}" for k in searched or config)


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
    """A value in a table or a line: 4 significant digits for a float, ``-`` for none (NaN too)."""
    if isinstance(v, float):
        return "-" if v != v else f"{v:.4g}"
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
