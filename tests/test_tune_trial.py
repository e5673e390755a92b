"""``tune_trial`` in this process: what a trial promises Tune, with Ray's session faked.

Ray runs the function trainable in a worker, where a mutation run cannot see it (bench/mutation.py).
Here ``ray.tune``'s session calls are replaced by a ``Session`` that keeps what Tune keeps (each
report's metrics and a copy of its checkpoint folder, taken before the trial deletes it) and hands
back a checkpoint to resume from. The trial is the real FCN on 200 MNIST examples per split.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
import torch
from ray import tune
from ray.train import Checkpoint

from dlb_tune.tasks import TrialContext
from dlb_tune.tasks.base import _REGISTRY
from dlb_tune.tasks.fcn import FCN, FCNConfig
from dlb_tune.trainable import STATE_FILE, build_task, evaluate_checkpoint, load_state, tune_trial

EPOCHS = 3
CONFIG = {"hidden_size": 16, "batch_size": 50}
NODE = "node-of-this-test"
GRID = (3, 4, 6)  # the drawn task's figure: channels, height, width
GREY = 0.5  # its colour: 127 in the PNG that TensorBoard stores


class Drawn(FCN):
    """The FCN with a figure (in the ``(grids, notes)`` form) and a file in its test report."""

    name = "fcn_drawn"

    def figures(self, split: str = "val"):
        self.splits[split]  # a real task draws the split it is asked for: a KeyError for any other name
        return {"grey": torch.full(GRID, GREY)}, {"split": split}

    def test_report(self, out_dir: Path) -> dict:
        # the planned epochs, as the CNN's one-cycle schedule reads them when it is built
        (out_dir / "report.txt").write_text(f"drawn after {self.ctx.max_epochs} planned epochs")
        return {"file": "report.txt"}


class Session:
    """One trial's view of Tune: its id and folder, the checkpoint it starts from, what it reported."""

    def __init__(self, root: Path, trial_id: str | None = "trial_a", trial_dir: Path | None = None,
                 resume_from: Path | None = None, place: int = 1):
        self.root, self.trial_id, self.trial_dir, self.resume_from = root, trial_id, trial_dir, resume_from
        self.place = place  # the trial's place in the sweep, which seeds it
        self.reports: list[tuple[dict, Path | None]] = []

    def get_trial_id(self) -> str | None:
        return self.trial_id

    def get_trial_name(self) -> str | None:
        return f"tune_trial_{self.trial_id}_{self.place}" if self.trial_id else None  # as engine.trial_name does

    def get_trial_dir(self) -> str | None:
        return str(self.trial_dir) if self.trial_dir else None

    def get_checkpoint(self) -> Checkpoint | None:
        return Checkpoint.from_directory(str(self.resume_from)) if self.resume_from else None

    def report(self, metrics: dict, *, checkpoint: Checkpoint | None = None) -> None:
        kept = None
        if checkpoint is not None:  # Tune persists the folder before report returns
            kept = self.root / f"checkpoint_{len(self.reports)}"
            with checkpoint.as_directory() as d:
                shutil.copytree(d, kept)
        self.reports.append((dict(metrics), kept))

    def epochs(self) -> list[int]:
        return [m["epoch"] for m, _ in self.reports]


@pytest.fixture(scope="module")
def data(data_dir):
    return FCN.load_data(data_dir, FCNConfig(**CONFIG), limit=200)


@pytest.fixture()
def run(monkeypatch, data, tmp_path):
    """``run(session, task_name)``: one trial as Tune would start it, reporting into ``session``."""
    monkeypatch.setitem(_REGISTRY, Drawn.name, Drawn)
    monkeypatch.chdir(tmp_path)  # a figure written without a trial folder lands in ./runs: not in the checkout
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: NODE))
    threads = torch.get_num_threads()

    def start(session: Session, task_name: str = "fcn") -> Session:
        monkeypatch.setattr(tune, "get_context", lambda: session)
        monkeypatch.setattr(tune, "get_checkpoint", session.get_checkpoint)
        monkeypatch.setattr(tune, "report", session.report)
        tune_trial(dict(CONFIG), data=data, task_name=task_name, metric="val_acc", mode="max", max_epochs=EPOCHS,
                   seed=5, threads=1, use_gpu=False)
        return session

    yield start
    torch.set_num_threads(threads)


def restored(task_name: str, data, checkpoint: Path):
    task = build_task(task_name, CONFIG, data, TrialContext(max_epochs=EPOCHS))
    task.load_state_dict(load_state(checkpoint / STATE_FILE)["task"])
    return task


def test_a_trial_reports_each_epoch_with_its_checkpoint_and_node(run, data, tmp_path):
    session = run(Session(tmp_path))
    assert session.epochs() == list(range(1, EPOCHS + 1))
    best = None
    for metrics, checkpoint in session.reports:
        best = max(best or 0, metrics["val_acc"])
        assert metrics["node_id"] == NODE and metrics["best_val_acc"] == best
        assert not [k for k in metrics if k.startswith(("test_", "gpu_"))], metrics  # no test split; a CPU trial
        state = load_state(checkpoint / STATE_FILE)
        assert (state["epoch"], state["best"]) == (metrics["epoch"] - 1, best)
    last, checkpoint = session.reports[-1]
    assert restored("fcn", data, checkpoint).evaluate("val")["acc"] == last["val_acc"]  # the epoch's own weights
    other = run(Session(tmp_path / "b", trial_id="trial_b", place=2))
    assert other.reports[0][0]["train_loss"] != session.reports[0][0]["train_loss"], "each trial its own seed"


def test_a_resumed_trial_continues_at_the_next_epoch_exactly(run, tmp_path):
    straight = run(Session(tmp_path / "straight"))
    resumed = run(Session(tmp_path / "resumed", resume_from=straight.reports[0][1]))
    assert resumed.epochs() == list(range(2, EPOCHS + 1))
    for (before, _), (after, _) in zip(straight.reports[1:], resumed.reports):
        clocks = ("epoch_s", "ended_at")
        assert {k: v for k, v in after.items() if k not in clocks} == {k: v for k, v in before.items() if k not in clocks}


def read_images(log_dir: Path) -> list[tuple[str, int, int, int, tuple]]:
    """(tag, step, height, width, (darkest, brightest) pixel) of every image in a TensorBoard folder."""
    import io

    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    return [(tag, e.step, e.height, e.width, Image.open(io.BytesIO(e.encoded_image_string)).convert("L").getextrema())
            for tag in events.Tags()["images"] for e in events.Images(tag)]


def test_figures_are_drawn_when_the_trial_improves_and_has_a_folder(run, tmp_path, monkeypatch):
    session = run(Session(tmp_path, trial_dir=tmp_path / "trial"), "fcn_drawn")
    firsts = {}
    for metrics, _ in session.reports:
        firsts.setdefault(metrics["best_val_acc"], metrics["epoch"])  # the epoch that reached each best
    grey = (int(GREY * 255),) * 2
    assert read_images(tmp_path / "trial") == [("figures/grey", e, *GRID[1:], grey) for e in sorted(firsts.values())]
    plain = run(Session(tmp_path / "plain", trial_dir=tmp_path / "plain_trial"))  # the FCN draws nothing
    assert plain.epochs() == [1, 2, 3] and not list((tmp_path / "plain_trial").glob("*"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # no trial folder: no figures, not even in ./runs
    run(Session(tmp_path / "nowhere"), "fcn_drawn")
    assert not list((tmp_path / "cwd").glob("*"))


def test_the_test_evaluation_reads_the_checkpoint_it_is_given(run, data, tmp_path):
    session = run(Session(tmp_path), "fcn_drawn")
    checkpoint, out = session.reports[0][1], tmp_path / "final" / "test"
    test = restored("fcn_drawn", data, checkpoint).evaluate("test")
    for _ in range(2):  # a resumed sweep evaluates again into the same folder
        final = evaluate_checkpoint("fcn_drawn", CONFIG, data, str(checkpoint), out, EPOCHS)
        assert final == {"test_acc": test["acc"], "test_loss": test["loss"], "test_report": {"file": "report.txt"}}
    assert (out / "report.txt").read_text() == f"drawn after {EPOCHS} planned epochs"
    plain = evaluate_checkpoint("fcn", CONFIG, data, str(checkpoint), tmp_path / "plain", EPOCHS)
    assert plain == {"test_acc": test["acc"], "test_loss": test["loss"]}  # no report: no key
    assert test != restored("fcn_drawn", data, session.reports[-1][1]).evaluate("test")  # the folder given decides
