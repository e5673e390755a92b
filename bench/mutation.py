"""``python -m bench mutation [MODULE|all]``: mutation testing (mutmut) where a bug costs most.

    python -m bench mutation fcn         # one module: minutes on 2 CPUs
    python -m bench mutation all         # every module below, one stats run shared by all
    python -m bench mutation results trainable  # several, sharing one stats run
    python -m bench mutation fcn --keep  # keep the copy, to `mutmut show NAME` a survivor there

mutmut runs in a copy of the tree (it writes ``mutants/`` beside the code), so the working tree is
never touched. It records which tests call each function and runs only those against that
function's mutants. It sees calls in this process only: code reached only inside Ray workers
shows as "no tests", and Ray tests are skipped (``DLB_TUNE_MUTATION``, tests/conftest.py) because
their workers would run the unmutated code and let every mutant survive. Each run writes
``bench/results/mutation/MODULE.json``: counts, and the diff of every survivor.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import DataDir, benchmark
from bench.common import command_line, default_data_dir, loadavg, say

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "mutation"

# name -> (file, functions to mutate; None: all of it). Functions by name, never by line, so the
# configuration survives edits; a name that matches no mutant is an error, not a silent zero.
MODULES: dict[str, tuple[str, list[str] | None]] = {
    "space": ("dlb_tune/space.py", None),  # search-space validation
    # trial classification; the rest of results.py (finish, the test evaluation) runs only in
    # Ray sweeps, which mutation runs skip
    "results": ("dlb_tune/finish.py", ["trial_table"]),
    "trainable": ("dlb_tune/trainable.py", None),  # epoch loop, checkpointing
    "fcn": ("dlb_tune/tasks/fcn.py", None),  # hand-written forward/backward, SGD with momentum
    # the data-parallel test checkpoint's choice; the rest (the TorchTrainer driver, its workers,
    # the placement-group callback) runs only in Ray, which mutation runs skip
    "distributed": ("dlb_tune/distributed.py", ["best_train_checkpoint"]),
    "data-parallel": ("dlb_tune/tasks/base.py", ["TrialContext.batches", "TrialContext.all_reduce_mean"]),
}
# Every fast test is a candidate; mutmut narrows each mutant to the tests that call its function.
TESTS = ["tests", "-m", "not slow"]
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "mutants", "__pycache__", "*.egg-info", ".pytest_cache",
                                     "dlb-tune-runs", "results")  # results: bench's saved figures


def mutant_globs(path: str, functions: list[str] | None) -> list[str]:
    """mutmut's names for the mutants of ``functions`` in ``path``: ``pkg.mod.x_fn__mutmut_3``,
    ``pkg.mod.xǁClassǁmethod__mutmut_3``."""
    module = path.removesuffix(".py").replace("/", ".")
    if functions is None:
        return [f"{module}.*"]
    return [f"{module}.x{'ǁ'.join(['', *f.split('.')]) if '.' in f else '_' + f}__mutmut_*" for f in functions]


def run_globs(globs: list[str]) -> list[str]:
    """The same, also matching the bare function name: mutmut picks the clean tests to run first by
    that name, and runs every test when nothing matches."""
    return [g.removesuffix("__mutmut_*") + "*" for g in globs]


def mutmut_config(paths: list[str], work: Path) -> str:
    """The [tool.mutmut] table appended to the copy's pyproject.toml."""
    settings = {
        "source_paths": ["dlb_tune"],
        # mutmut runs the tests in mutants/, beside its copy of the package: what the tests read
        # beside the package in a checkout (search_spaces/, cluster.yaml, README.md...) goes too
        "also_copy": sorted(p.name for p in work.iterdir() if p.name not in ("dlb_tune", "tests", "mutants")),
        "only_mutate": paths,
        "pytest_add_cli_args_test_selection": TESTS,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
    }
    return "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())


def environment(data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CI")}  # the copy's code; skips allowed
    # mutmut forks a worker per mutant from a process that has run torch: torch's thread pool does
    # not survive fork (the child hangs), one thread per worker does.
    return {**env, "DLB_TUNE_MUTATION": "1", "DLB_TUNE_DATA": data_dir, "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def statuses(work: Path, env: dict[str, str]) -> dict[str, str]:
    """mutant name -> killed | survived | no tests | timeout | ..., from ``mutmut results --all``."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                         text=True, check=True).stdout
    return dict(m.groups() for m in re.finditer(r"^\s+(\S+): (.+)$", out, re.M))


def summarize(name: str, found: dict[str, str], globs: list[str], work: Path, env: dict[str, str]) -> dict:
    import fnmatch

    mine = {k: v for k, v in found.items() if any(fnmatch.fnmatchcase(k, g) for g in globs)}
    if not mine:
        raise SystemExit(f"error: {name}: no mutant matches {globs}; was a function renamed or moved?")
    counts: dict[str, int] = {}
    for status in mine.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = {k: subprocess.run(["mutmut", "show", k], cwd=work, env=env, capture_output=True,
                                   text=True).stdout for k, v in sorted(mine.items()) if v == "survived"}
    detected = counts.get("killed", 0) + counts.get("timeout", 0)
    return {"module": name, "file": MODULES[name][0], "functions": MODULES[name][1], "total": len(mine),
            "killed": detected, "counts": counts, "survivors": survivors}


def run(names: list[str], data_dir: str, children: int, keep: bool) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="dlb-tune-mutation-"))
    shutil.copytree(ROOT, work, ignore=COPY_IGNORE, dirs_exist_ok=True)
    paths = sorted({MODULES[n][0] for n in names})
    with open(work / "pyproject.toml", "a") as f:
        f.write(mutmut_config(paths, work))
    globs = {n: mutant_globs(*MODULES[n]) for n in names}
    env = environment(data_dir)
    say(f"mutation: {', '.join(names)} in {work} (load {loadavg()})")
    t0 = time.perf_counter()
    cmd = ["mutmut", "run", "--max-children", str(children), *run_globs([g for n in names for g in globs[n]])]
    log = work / "mutmut.log"
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:  # the copy stays, for its log
        lines = [ln for ln in log.read_text().replace("\r", "\n").splitlines() if ln.strip()]
        raise SystemExit(f"error: mutmut failed (exit {proc.returncode}): {(lines or ['no output'])[-1].strip()} "
                         f"(whole log: {log})")
    found = statuses(work, env)
    reports = [{**summarize(n, found, globs[n], work, env), "wall_s": round(wall), "loadavg_end": loadavg(),
                "command": command_line()} for n in names]
    if not keep:
        shutil.rmtree(work)
    return reports


@benchmark("mutation")
def mutation(
    module: Annotated[list[str], typer.Argument(
        help=f"One or more of: all, {', '.join(MODULES)}; several share one stats run.")],
    data_dir: DataDir = None,
    children: Annotated[int, typer.Option(help="Mutants tested at once.")] = os.cpu_count() or 2,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the mutated copy (its path is printed).")] = False,
) -> None:
    """Mutation testing (mutmut) of the modules where a bug costs most -> bench/results/mutation/."""
    unknown = [m for m in module if m not in ("all", *MODULES)]
    if unknown:
        raise SystemExit(f"error: unknown module {', '.join(unknown)} (all, {', '.join(MODULES)})")
    if not shutil.which("mutmut"):
        raise SystemExit('error: mutmut is not installed; pip install -e ".[dev]"')
    names = list(MODULES) if "all" in module else list(dict.fromkeys(module))
    OUT.mkdir(parents=True, exist_ok=True)
    for rep in run(names, data_dir or default_data_dir(), children, keep):
        (OUT / f"{rep['module']}.json").write_text(json.dumps(rep, indent=1, ensure_ascii=False) + "\n")
        extra = ", ".join(f"{v} {k}" for k, v in sorted(rep["counts"].items()) if k != "killed")
        say(f"{rep['module']}: killed {rep['killed']} / {rep['total']} ({extra}); "
            f"survivors in {OUT / (rep['module'] + '.json')}")
