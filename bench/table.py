"""The markdown table: every figure's JSON in ``bench/results/<mode>/`` rendered to ``table.md``,
each figure's section by its own ``render``; and the helpers those use.

    python -m bench table [--quick]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import ROOT, load_json, machine_line, mode_dir

README = ROOT / "bench" / "README.md"  # its copy of the table, between bench-table markers


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return out


def stamp(rec: dict[str, Any]) -> str:
    return (f"_{rec['started']}, {rec['wall_s']:.0f} s, load average (1/5/15 min) "
            f"{fmt(rec.get('loadavg_start'))} at start, {fmt(rec.get('loadavg_end'))} at end; "
            f"`{rec['command']}`_")


def table_note(pairs: list[tuple[str, Any]]) -> str:
    return "\n".join(table(["measure", "value"], [[k, v] for k, v in pairs]))


def render(quick: bool, figures) -> str:
    """The table of ``figures`` (``bench.cli.Figure``s, in order) from their saved records."""
    folder = mode_dir(quick)
    records = {fig.key: load_json(folder / f"{fig.key}.json") for fig in figures}
    present = [r for r in records.values() if r]
    mode = "quick" if quick else "full"
    lines = [f"# dlb-tune benchmarks ({mode})", ""]
    if present:
        lines += [f"Machine: {machine_line(present[0]['machine'])}.", "",
                  "Benchmarks report, they do not judge: compare within one run, as ratios; the load average "
                  "under each figure says how busy the machine was.", ""]
    for fig in figures:
        rec = records[fig.key]
        lines += [f"## {fig.number}. {fig.title}", ""]
        if rec is None:
            lines += [f"not run yet: `python -m bench {fig.name}{' --quick' if quick else ''}`", ""]
            continue
        if "error" in rec:
            lines += [f"failed: {rec['error']}", "", stamp(rec), ""]
            continue
        lines += fig.render(rec) + ["", stamp(rec), ""]
    return "\n".join(lines)


def write(quick: bool, figures) -> Path:
    """``results/<mode>/table.md``; also bench/README.md's copy, between its bench-table markers."""
    path = mode_dir(quick) / "table.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(quick, figures)
    path.write_text(text)
    update_readme(text, "quick" if quick else "full")
    return path


def update_readme(text: str, mode: str, readme: Path = README) -> None:
    """Replace the block between ``<!-- bench-table:MODE -->`` and ``<!-- /bench-table:MODE -->``
    in ``readme`` (headings one level down); no markers, no change."""
    begin, end = f"<!-- bench-table:{mode} -->", f"<!-- /bench-table:{mode} -->"
    old = readme.read_text() if readme.is_file() else ""
    if begin not in old or end not in old:
        return
    body = "\n".join("#" + line if line.startswith("#") else line for line in text.strip().splitlines())
    head, rest = old.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}")
