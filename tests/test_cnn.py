"""The ``cnn`` task: Grocery Store loader and cache, model factory over the search space, the
reports, and a short CLI sweep on the real (downscaled) test copy."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dlb_tune.distributions import Choice, Constant, SpaceError
from dlb_tune.space import load_space, parse_space
from dlb_tune.tasks import DataError, TrialContext, Trials, cnn
from dlb_tune.tasks.cnn import CNNConfig, CNNTask

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "cnn.yaml"
ARCH_KEYS = ("depth", "base_width", "width_growth", "head", "fc_hidden")


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """A cache folder for this module: the first load decodes, later ones must not."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLB_TUNE_CACHE", str(tmp_path_factory.mktemp("cnn-cache")))
        yield


@pytest.fixture(scope="module")
def grocery_root(data_dir) -> Path:
    root = Path(data_dir) / "grocery" / "GroceryStoreDataset" / "dataset"
    if not (root / "train.txt").is_file():
        pytest.skip(f"no Grocery Store copy at {root}")
    return root


@pytest.fixture(scope="module")
def grocery(grocery_root):
    return CNNTask.load_data(grocery_root, CNNConfig())


def split_lines(root: Path, split: str) -> list[str]:
    return [ln for ln in (root / f"{split}.txt").read_text().splitlines() if ln.strip()]


# ----------------------------------------------------------------------------------- data


def test_loader_matches_split_files(grocery, grocery_root):
    assert len(grocery["classes"]) == 43
    for split in ("train", "val", "test"):
        x, y = grocery[split]["x"], grocery[split]["y"]
        lines = split_lines(grocery_root, split)
        assert x.shape == (len(lines), 3, 64, 64) and x.dtype == torch.uint8
        assert y.tolist() == [int(ln.split(",")[2]) for ln in lines]  # coarse ids, file order
        assert 0 <= y.min() and y.max() < 43
    assert grocery["mean"].shape == (3,) and (grocery["std"] > 0).all()


def test_cache_reused_and_fine_labels_share_it(grocery, grocery_root, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("decoded an image although the cache holds it")

    monkeypatch.setattr(cnn, "decode_image", no_decoding)
    again = CNNTask.load_data(grocery_root.parent.parent, CNNConfig())  # GroceryStoreDataset/
    assert torch.equal(again["train"]["x"], grocery["train"]["x"])
    fine = CNNTask.load_data(grocery_root, CNNConfig(labels="fine"))
    assert len(fine["classes"]) == 81
    assert fine["test"]["y"].tolist() == [int(ln.split(",")[1]) for ln in split_lines(grocery_root, "test")]


def test_limit_is_a_fixed_subset(grocery_root):
    a = CNNTask.load_data(grocery_root, CNNConfig(), limit=50)
    b = CNNTask.load_data(grocery_root, CNNConfig(), limit=50)
    assert [len(a[s]["y"]) for s in ("train", "val", "test")] == [50, 50, 50]
    assert torch.equal(a["val"]["x"], b["val"]["x"])


@pytest.fixture
def tiny_layout(grocery_root, tmp_path) -> Path:
    """``tmp/GroceryStoreDataset/dataset`` with the first 3 images of each split, copied."""
    root = tmp_path / "GroceryStoreDataset" / "dataset"
    root.mkdir(parents=True)
    shutil.copy(grocery_root / "classes.csv", root)
    for split in ("train", "val", "test"):
        lines = split_lines(grocery_root, split)[:3]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for ln in lines:
            rel = ln.split(",")[0]
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(grocery_root / rel, root / rel)
    return root


def first_image(root: Path) -> Path:
    return root / split_lines(root, "train")[0].split(",")[0]


def test_changed_image_is_decoded_again(tiny_layout, monkeypatch):
    calls = []
    real = cnn.decode_image
    monkeypatch.setattr(cnn, "decode_image", lambda p, s: calls.append(p) or real(p, s))
    CNNTask.load_data(tiny_layout, CNNConfig(image_size=32))
    assert len(calls) == 9
    CNNTask.load_data(tiny_layout, CNNConfig(image_size=32))
    assert len(calls) == 9  # cached
    img = first_image(tiny_layout)
    img.write_bytes(img.read_bytes() + b"\0")  # new size and mtime: the key changes
    data = CNNTask.load_data(tiny_layout, CNNConfig(image_size=32))
    assert len(calls) == 18 and data["train"]["x"].shape == (3, 3, 32, 32)


def test_missing_image_is_named(tiny_layout):
    img = first_image(tiny_layout)
    img.unlink()
    with pytest.raises(DataError, match=img.name):
        CNNTask.load_data(tiny_layout, CNNConfig())


def test_unreadable_image_is_named(tiny_layout):
    img = first_image(tiny_layout)
    img.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=f"unreadable image .*{img.name}"):
        CNNTask.load_data(tiny_layout, CNNConfig())


def test_wrong_layout_names_what_was_expected(tiny_layout, tmp_path):
    with pytest.raises(DataError, match="expected train.txt, val.txt, test.txt and classes.csv"):
        CNNTask.load_data(tmp_path / "GroceryStoreDataset" / "dataset" / "train", CNNConfig())
    (tiny_layout / "classes.csv").unlink()
    with pytest.raises(DataError, match="lacks classes.csv"):
        CNNTask.load_data(tmp_path, CNNConfig())


def test_malformed_split_line_is_named(tiny_layout):
    (tiny_layout / "val.txt").write_text("val/x.jpg, 0\n")
    with pytest.raises(DataError, match=r"val.txt:1: expected 'path, fine_id, coarse_id'"):
        CNNTask.load_data(tiny_layout, CNNConfig())


def test_mnist(data_dir):
    if not (Path(data_dir) / "MNIST" / "raw").is_dir():
        pytest.skip("no MNIST copy")
    data = CNNTask.load_data(Path(data_dir), CNNConfig(dataset="mnist"), limit=64)
    assert data["train"]["x"].shape == (64, 1, 28, 28) and data["train"]["x"].dtype == torch.uint8
    assert data["classes"] == [str(d) for d in range(10)]
    task = CNNTask(CNNConfig(dataset="mnist", depth=6, base_width=4, batch_size=32), data, TrialContext(max_epochs=1))
    assert task.train_epoch(0)["loss"] > 0  # 6 blocks on 28 px: ceil pooling ends at 1 px
    with pytest.raises(DataError, match="MNIST/raw"):
        CNNTask.load_data(Path(data_dir) / "grocery", CNNConfig(dataset="mnist"))


# ---------------------------------------------------------------------------------- model


def space_params() -> dict:
    return load_space(SPACE).params


def expected_params(cfg: CNNConfig, in_ch: int, classes: int, size: int) -> int:
    """Counted by hand: conv 3x3 without bias + batch norm (2 per channel), or (separable, after
    the first block) depthwise 3x3 + BN on the input channels and pointwise 1x1 + BN; then the head."""
    n, c = 0, in_ch
    for i, w in enumerate(cnn.block_widths(cfg.depth, cfg.base_width, cfg.width_growth)):
        n += (9 * c + 2 * c) + (c * w + 2 * w) if cfg.block == "separable" and i else 9 * c * w + 2 * w
        c, size = w, -(-size // 2)
    if cfg.head == "gap":
        return n + c * classes + classes
    return n + c * size * size * cfg.fc_hidden + cfg.fc_hidden + cfg.fc_hidden * classes + classes


def fake_data(channels: int, size: int, classes: int, n: int = 8) -> dict:
    """Random images for shape and gradient checks only."""
    g = torch.Generator().manual_seed(0)
    split = {"x": torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g),
             "y": torch.randint(0, classes, (n,), generator=g)}
    return {"train": split, "val": split, "test": split, "classes": [str(i) for i in range(classes)],
            "mean": torch.full((channels,), 0.5), "std": torch.full((channels,), 0.25)}


CORNERS = list(itertools.product(*(space_params()[k].extremes() for k in ARCH_KEYS)))


@pytest.mark.parametrize("corner", CORNERS, ids=lambda c: "-".join(map(str, c)))
def test_every_corner_of_the_space_builds_and_trains(corner):
    cfg = CNNConfig(**dict(zip(ARCH_KEYS, corner)), batch_size=4)
    task = CNNTask(cfg, fake_data(3, 64, 43), TrialContext(max_epochs=1))
    params = task.trial_metrics()["params"]
    assert params == sum(p.numel() for p in task.model.parameters()) == expected_params(cfg, 3, 43, 64)
    logits = task.model(task.inputs(task.x["train"][:4], train=True))
    assert logits.shape == (4, 43)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in task.model.parameters())


def test_separable_blocks_count_as_by_hand_and_train():
    cfg = CNNConfig(block="separable", depth=3, base_width=8, width_growth=2.0, head="gap", batch_size=4)
    # by hand: stem conv 3->8 (216 + 16); dw 8 (72 + 16), pw 8->16 (128 + 32); dw 16 (144 + 32),
    # pw 16->32 (512 + 64); linear 32->43 (1376 + 43)
    assert expected_params(cfg, 3, 43, 64) == 2651 == CNNTask.count_params(cfg)
    task = CNNTask(cfg, fake_data(3, 64, 43), TrialContext(max_epochs=1))
    assert cnn.count_params(task.model) == 2651
    depthwise = [m for m in task.model if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert [(m.in_channels, m.groups, m.kernel_size) for m in depthwise] == [(8, 8, (3, 3)), (16, 16, (3, 3))]
    logits = task.model(task.inputs(task.x["train"][:4], train=True))
    assert logits.shape == (4, 43)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in task.model.parameters())


SMALL_ARCH = ("block", "depth", "base_width", "width_growth")
SMALL_CORNERS = list(itertools.product(*(load_space(SPACE.with_name("cnn_small.yaml")).params[k].extremes()
                                         for k in SMALL_ARCH)))


@pytest.mark.parametrize("corner", SMALL_CORNERS, ids=lambda c: "-".join(map(str, c)))
def test_count_params_without_data_is_the_trained_models_count(corner):
    cfg = CNNConfig(**dict(zip(SMALL_ARCH, corner)), head="gap")
    task = CNNTask(cfg, fake_data(3, 64, 43), TrialContext(max_epochs=1))
    assert CNNTask.count_params(cfg) == task.trial_metrics()["params"] == expected_params(cfg, 3, 43, 64)


def test_count_params_knows_the_real_data_sets_shapes(grocery, grocery_root, data_dir):
    """``count_params`` has no data: its class counts and image sizes must be the loaders'."""
    fine = CNNTask.load_data(grocery_root, CNNConfig(labels="fine"), limit=8)
    cases = [(CNNConfig(), grocery), (CNNConfig(labels="fine", block="separable"), fine)]
    if (Path(data_dir) / "MNIST" / "raw").is_dir():
        mnist = CNNTask.load_data(Path(data_dir), CNNConfig(dataset="mnist"), limit=8)
        cases.append((CNNConfig(dataset="mnist", depth=3), mnist))
    for cfg, data in cases:
        assert CNNTask.count_params(cfg) == CNNTask(cfg, data, TrialContext(max_epochs=1)).trial_metrics()["params"]


def test_course_reference_net_is_a_point_of_the_space():
    ref = CNNConfig(depth=4, base_width=32, width_growth=2.0, head="fc", fc_hidden=512, dropout=0.3)
    assert cnn.block_widths(ref.depth, ref.base_width, ref.width_growth) == [32, 64, 128, 256]
    n = cnn.count_params(cnn.build_model(ref, 3, 43, 64))
    assert n == expected_params(ref, 3, 43, 64) and 2.4e6 < n < 2.6e6
    space = space_params()
    for key in (*ARCH_KEYS, "dropout"):
        dist, value = space[key], getattr(ref, key)
        if isinstance(dist, (Choice, Constant)):
            assert value in dist.candidates(), key
        else:
            assert dist.low <= value <= dist.high, key


def test_augmentation_is_seeded_and_keeps_range():
    x = fake_data(3, 32, 2)["train"]["x"].float() / 255
    a = cnn.augment_batch(x, torch.Generator().manual_seed(1), colour=True)
    b = cnn.augment_batch(x, torch.Generator().manual_seed(1), colour=True)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    assert a.min() >= 0 and a.max() <= 1


def test_learns_and_resumes_on_real_images(grocery_root, tmp_path):
    data = CNNTask.load_data(grocery_root, CNNConfig(), limit=256)
    cfg = CNNConfig(depth=3, base_width=8, head="gap", dropout=0.0, lr=3e-3, augment=False, lr_schedule="none")
    task = CNNTask(cfg, data, TrialContext(max_epochs=4))
    losses = [task.train_epoch(e)["loss"] for e in range(4)]
    assert losses[-1] < losses[0]
    clone = CNNTask(cfg, data, TrialContext(max_epochs=4, seed=7))
    clone.load_state_dict(task.state_dict())
    assert clone.evaluate("val") == task.evaluate("val")
    report = task.test_report(tmp_path)
    rows = (tmp_path / "confusion.csv").read_text().splitlines()
    assert len(rows) == 44 and sum(sum(map(int, r.split(",")[1:])) for r in rows[1:]) == 256
    assert (tmp_path / "misclassified.png").stat().st_size > 1000
    assert set(report["per_class_acc"]) <= set(data["classes"])


def test_summarize_pareto_and_best_small():
    df = pd.DataFrame({
        "trial_id": list("abcde"),
        "best_val_acc": [0.60, 0.70, 0.65, 0.75, 0.50],
        "params": [50_000, 80_000, 90_000, 2_500_000, 200_000],
        "config/depth": [3, 4, 4, 4, 5],
    })
    out = CNNTask.summarize(Trials.from_table(df, "val_acc"))
    assert [t["trial_id"] for t in out["pareto"]] == ["a", "b", "d"]
    best = out["best_under_100k_params"]
    assert best["trial_id"] == "b" and best["config"] == {"depth": 4}


def test_old_schedule_key_is_refused_naming_lr_schedule():
    """``schedule`` is ``lr_schedule`` now: an old space file, or an old experiment's space.yaml
    on resume, stops before Ray starts with one line naming the new key."""
    raw = yaml.safe_load(SPACE.read_text())
    raw["params"]["schedule"] = raw["params"].pop("lr_schedule")
    with pytest.raises(SpaceError, match=r"'schedule' is not a parameter of task 'cnn' \(did you mean 'lr_schedule'\?\)"):
        parse_space(raw, source="space.yaml")


# ------------------------------------------------------------------------------------ CLI


@pytest.mark.slow
def test_cli_sweep_on_real_data(data_dir, grocery_root, tmp_path, ray_local):
    from typer.testing import CliRunner

    from dlb_tune.cli import app

    args = ["sweep", "cnn", "--data-dir", str(data_dir), "--storage", str(tmp_path), "--name", "smoke",
            "--smoke", "--limit", "200", "--num-samples", "2", "--max-epochs", "2", "--cpus", "2",
            "--objective", "acc-params"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "smoke" / "final.json").read_text())
    assert final["trials"]["errored"] == 0
    assert 0 <= final["test"]["test_acc"] <= 1
    assert final["test"]["test_report"]["misclassified"] == "misclassified.png"
    assert (tmp_path / "smoke" / "test_report" / "misclassified.png").is_file()
    summary = final["task_summary"]
    assert summary["pareto"] and summary["best_under_100k_params"]["params"] < 100_000
