"""One small real FCN sweep, planned first, shared by the report, TensorBoard and plan tests.

``finished_sweep`` runs ``dlb-tune plan`` and then ``dlb-tune sweep`` under the same name (as a
user would), once per test session, whichever test module asks first. Each caller (one per module)
gets its own copy of the folder: tests write into it (reports, seed re-runs, TensorBoard files),
and no module may see what another wrote, whatever order they run in.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from typer.testing import CliRunner

from dlb_tune.cli import app
from spaces import shrunk

runner = CliRunner()


# The shipped fcn space, 6 trials x up to 3 epochs on 3,000 MNIST examples per split: ASHA (rungs
# at 1 and 2) stops some; hidden_size gives `plan` two corners to time (128 keeps the course's
# own point, which runs first). One trial at a time (2 CPUs per trial): ASHA then sees the seeded
# proposals in order, so which trials it stops does not depend on which of two concurrent
# sub-second trials reports first.
SIZES = dict(num_samples=6, max_epochs=3, grace_period=1, reduction_factor=2, time_budget_s=None)
PARAMS = {"hidden_size": {"choice": [32, 128]}, "num_layers": 1, "batch_size": 64}
NAME = "s"
LIMIT = "3000"


def write_space(path: Path) -> Path:
    return shrunk("fcn", path, PARAMS, **SIZES)


@dataclass
class Finished:
    root: Path  # holds space.yaml and the storage folder
    storage: Path
    exp: Path  # the experiment folder
    space: Path
    plan_output: str
    sweep_output: str


_DONE: dict[str, Finished] = {}  # the one real sweep, never handed out itself


def finished_sweep(tmp_path_factory, data_dir) -> Finished:
    """A private copy of the session's finished sweep."""
    done = _run_once(tmp_path_factory, data_dir)
    root = tmp_path_factory.mktemp("finished-copy")
    shutil.copytree(done.root, root, dirs_exist_ok=True)
    return replace(done, root=root, storage=root / done.storage.name, exp=root / done.storage.name / NAME,
                   space=root / done.space.name)


def _run_once(tmp_path_factory, data_dir) -> Finished:
    if "fcn" in _DONE:
        return _DONE["fcn"]
    root = tmp_path_factory.mktemp("finished")
    space = write_space(root / "space.yaml")
    storage = root / "runs"
    common = ["--data-dir", str(data_dir), "--space", str(space), "--storage", str(storage), "--name", NAME,
              "--limit", LIMIT]
    plan = runner.invoke(app, ["plan", "fcn", *common, "--cpus", "2", "--cpus-per-trial", "2",
                               "--calibration-batches", "5"])
    assert plan.exit_code == 0, plan.output
    sweep = runner.invoke(app, ["sweep", "fcn", *common, "--cpus-per-trial", "2", "--seed", "3"])
    assert sweep.exit_code == 0, sweep.output
    _DONE["fcn"] = Finished(root, storage, storage / NAME, space, plan.output, sweep.output)
    return _DONE["fcn"]
