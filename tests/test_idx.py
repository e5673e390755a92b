"""MNIST read from its IDX files without torchvision (a start-up cost every sweep driver paid):
the same tensors as torchvision's ``MNIST``, and a damaged file is one line."""

from __future__ import annotations

import shutil

import pytest
import torch

from dlb_tune.tasks._common import MNIST_FILES, load_mnist, read_idx
from dlb_tune.tasks.base import DataError


def test_load_mnist_reads_what_torchvision_reads(data_dir):
    from torchvision.datasets import MNIST

    ours = load_mnist(data_dir, val_size=5000)
    train, test = MNIST(str(data_dir), train=True), MNIST(str(data_dir), train=False)
    order = torch.randperm(len(train.data), generator=torch.Generator().manual_seed(0))
    expected = {"train": (train.data[order[5000:]], train.targets[order[5000:]]),
                "val": (train.data[order[:5000]], train.targets[order[:5000]]), "test": (test.data, test.targets)}
    for split, (x, y) in expected.items():
        assert ours[split]["x"].dtype == x.dtype and ours[split]["y"].dtype == y.dtype == torch.int64
        assert torch.equal(ours[split]["x"], x) and torch.equal(ours[split]["y"], y), split


@pytest.mark.parametrize("damage", ["truncated", "not_idx"])
def test_a_damaged_mnist_file_is_one_line(data_dir, tmp_path, damage):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_dir / "MNIST" / "raw", raw)
    labels = raw / MNIST_FILES[3]
    labels.chmod(0o644)
    body = labels.read_bytes()
    labels.write_bytes(body[:-1] if damage == "truncated" else b"PK\x03\x04" + body[4:])
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"cannot read MNIST in {raw}: {MNIST_FILES[3]} "), msg
    assert read_idx(raw / MNIST_FILES[2]).shape == (10000, 28, 28)
