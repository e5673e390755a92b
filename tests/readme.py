"""The README's shell blocks and ``dlb-tune`` commands, read as a specification.

A fenced block with no language, or ``sh``/``bash``/``shell``, is a shell block. The HTML comment
on the line before it says how the tests treat it:

* none: a walk a user takes as written; the tests run its ``dlb-tune`` lines in order
  (``tests/test_readme.py``), only the data folder and the storage folder substituted, through
  ``DLB_TUNE_DATA`` and ``DLB_TUNE_RESULTS``;
* ``<!-- readme: synopsis -->``: a command's shape with placeholders (``NAME``, ``[--all]``,
  ``--format table|csv``), not a command to run;
* ``<!-- readme: not run (REASON) -->``: cannot run here (the network, a GPU, a cloud account),
  and the reason says which.

Every ``dlb-tune`` command anywhere in the README (blocks of all three kinds, commands quoted
inside ``ray exec "..."``, and inline code in the prose) is checked against the CLI itself: the
command exists, every option it names is one of that command's, and every listed choice is one
the option takes. A renamed option fails there even where nothing can run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = ("", "sh", "bash", "shell")
MARKER = re.compile(r"<!--\s*readme:\s*(synopsis|not run)\s*(?:\((.+)\))?\s*-->")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    kind: str  # run | synopsis | not run
    reason: str | None  # why a block does not run
    commands: list[str]  # one per command line, continuations joined, comments dropped


def blocks(text: str | None = None) -> list[Block]:
    """The README's shell blocks, in order."""
    lines = (text if text is not None else README.read_text()).splitlines()
    out, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        if fence.group(2) in SHELL:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.search(before)
            kind, reason = (marker.group(1), marker.group(2)) if marker else ("run", None)
            out.append(Block(i + 1, kind, reason, _commands(lines[i + 1:end])))
        i = end + 1
    return out


def _commands(lines: list[str]) -> list[str]:
    joined, out = "", []
    for line in lines:
        joined += line.rstrip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        text = _uncomment(joined).strip()
        if text:
            out.append(text)
        joined = ""
    return out


def _uncomment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside quotes stays)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def inline_commands(text: str | None = None) -> list[str]:
    """``dlb-tune ...`` in the prose's inline code."""
    text = text if text is not None else README.read_text()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [m.group(1) for m in re.finditer(r"`(dlb-tune [^`]+)`", prose)]


def dlb_tune_calls(command: str) -> list[list[str]]:
    """Every ``dlb-tune`` invocation in a command line, as words after ``dlb-tune``: the command
    itself, or one quoted inside it (``ray exec cluster.yaml "dlb-tune ..."``, ``... -- dlb-tune``)."""
    try:
        words = shlex.split(command)
    except ValueError:  # an unbalanced quote: the shell would refuse it too
        raise AssertionError(f"not a shell command: {command}") from None
    calls = []
    for i, word in enumerate(words):
        if word == "dlb-tune":
            calls.append(words[i + 1:])
        elif " " in word and word.lstrip().startswith("dlb-tune "):
            calls += dlb_tune_calls(word)
    return calls
