"""The modules of ``dlb_tune``, ``bench`` and ``tests`` import one another without a cycle, imports
inside functions included; bench reaches dlb_tune only through its public names and the test kit.

An import placed inside a function hides a cycle from Python but not from this graph: a cycle
means a concept without a home, and this test names the modules around it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dlb_tune
import dlb_tune.testing

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dlb_tune"
PROJECT = (PACKAGE, ROOT / "bench", ROOT / "tests")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:``, which never run."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imported_names(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement anywhere in ``tree`` may load (``from a import b``: a
    and a.b); imports for type checkers only do not count."""
    names = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 more
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph(*roots: Path) -> dict[str, set[str]]:
    """Module -> the modules of the packages (default: dlb_tune) it imports. In a folder without
    ``__init__.py`` (tests/) a bare name may also be a module beside it: pytest puts the folder
    on ``sys.path`` (``from finished_sweep import ...`` is tests/finished_sweep.py)."""
    paths = {module_name(p, root): p for root in roots or (PACKAGE,) for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        names = imported_names(ast.parse(path.read_text()), name, path.name == "__init__.py")
        if not (path.parent / "__init__.py").exists():
            names |= {f"{name.rpartition('.')[0]}.{n}" for n in names}
        graph[name] = {n for n in names if n in paths and n != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_no_import_cycle_among_dlb_tune_bench_and_tests_modules():
    graph = import_graph(*PROJECT)
    assert "dlb_tune.experiment" in graph["dlb_tune.sweep"]  # the graph is real: dlb_tune,
    assert "bench.replay_report" in graph["bench.replay"]  # bench (imports inside functions),
    assert "tests.finished_sweep" in graph["tests.test_cli"]  # and tests' helpers by their bare names
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_inside_functions_count(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (pkg / "c.py").write_text("def g():\n    from . import a\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("def g():\n    import os\n")
    assert find_cycle(import_graph(pkg)) is None
    helpers = tmp_path / "tests"  # no __init__.py: its modules import one another by bare name
    helpers.mkdir()
    (helpers / "test_x.py").write_text("from helper import h\n")
    (helpers / "helper.py").write_text("def h():\n    import test_x\n")
    assert find_cycle(import_graph(pkg, helpers)) == ["tests.helper", "tests.test_x", "tests.helper"]


def dlb_tune_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) of every import from dlb_tune in a file (name None: ``import dlb_tune...``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.partition(".")[0] == "dlb_tune"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").partition(".")[0] == "dlb_tune":
            found += [(node.module, a.name) for a in node.names]
    return found


def test_bench_uses_only_dlb_tunes_public_names_and_the_test_kit():
    """``from dlb_tune import NAME`` (``dlb_tune._PUBLIC``) and ``from dlb_tune.testing import
    NAME``: dlb_tune's modules may move while those names keep working."""
    allowed = {"dlb_tune": set(dlb_tune.__all__), "dlb_tune.testing": set(dlb_tune.testing.__all__)}
    found = {(f"bench/{p.name}", module, name) for p in sorted((ROOT / "bench").glob("*.py"))
             for module, name in dlb_tune_imports(p)}
    assert {m for _, m, _ in found} >= {"dlb_tune", "dlb_tune.testing"}  # the check sees bench's imports
    bad = sorted((f, m, n) for f, m, n in found if n not in allowed.get(m, ()))
    assert not bad, f"bench imports dlb_tune's private modules or names: {bad}"


def test_the_test_kit_is_imported_one_way():
    """Tests and bench: ``from dlb_tune.testing import NAME`` (or the package), never its modules,
    nor by the names they had in tests/ (``from cluster_scenarios import ...``)."""
    files = sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "tests").glob("*.py"))
    kit = set(dlb_tune.testing.__all__)
    bad = [(p.name, m, n) for p in files for m, n in dlb_tune_imports(p)
           if m.startswith("dlb_tune.testing") and (m != "dlb_tune.testing" or n not in kit | {None})]
    assert not bad, f"the test kit imported another way: {bad}"
    old_names = {p.stem for p in (PACKAGE / "testing").glob("*.py")} - {"__init__"}
    old_names |= {f"tests.{name}" for name in old_names}
    by_old_path = sorted((p.name, n) for p in files
                         for n in imported_names(ast.parse(p.read_text()), module_name(p, p.parent), False)
                         if n in old_names)
    assert not by_old_path, f"the test kit imported by its old path: {by_old_path}"


def test_the_public_surface_resolves_without_importing_torch():
    """``from dlb_tune import NAME`` for every public name; ``import dlb_tune`` alone stays light."""
    import subprocess
    import sys

    code = ("import sys, dlb_tune, dlb_tune.testing\nassert 'torch' not in sys.modules and 'ray' not in sys.modules\n"
            "for name in dlb_tune.__all__: getattr(dlb_tune, name)\n"
            "for name in dlb_tune.testing.__all__: getattr(dlb_tune.testing, name)\n"
            "from dlb_tune.tasks import all_tasks\nassert 'fcn_counted' not in all_tasks()  # the kit adds no task\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# --- the two halves: reading a sweep never reaches the code that runs one ----------------------------

READERS = ("report", "report_numbers", "figures", "status", "listing", "summary", "board", "best")
RUNNERS = ("sweep", "engine", "prepare", "plan", "reruns", "finish", "progress", "trainable", "distributed", "search")


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_modules_that_read_a_sweep_import_nothing_that_runs_one():
    graph = import_graph()
    for reader in READERS:
        reached = {m.removeprefix("dlb_tune.") for m in reachable(graph, f"dlb_tune.{reader}")}
        assert not reached & set(RUNNERS), f"{reader} reaches {sorted(reached & set(RUNNERS))}"


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    memo: dict[str, list[str]] = {}

    def chain(m: str) -> list[str]:
        if m not in memo:
            memo[m] = [m] + max((chain(n) for n in graph.get(m, ())), key=len, default=[])
        return memo[m]

    return max((chain(m) for m in graph), key=len)


def test_the_import_chain_is_at_most_8_modules_tall():
    # The test kit drives the command line as a user would: it sits on top of the package's layers.
    graph = {m: deps for m, deps in import_graph().items() if not m.startswith("dlb_tune.testing")}
    chain = longest_chain(graph)
    assert len(chain) <= 8, " -> ".join(chain)


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
