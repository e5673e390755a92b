"""MNIST read from its IDX files without torchvision (importing it was a start-up cost every sweep
driver paid): what torchvision's ``MNIST`` read, and a damaged file is one line."""

from __future__ import annotations

import pytest
import torch

from dlb_tune.tasks._common import MNIST_FILES, load_mnist, read_idx
from dlb_tune.tasks.base import DataError


# What torchvision 0.29's MNIST reads from these files (computed with it once; the labels are
# MNIST's published ones): shape, first labels, label counts, pixel sums (first, last, all images)
# and row 14 weighted by column, so a shifted, transposed or swapped read cannot match.
EXPECTED = {
    "train": ((60000, 28, 28), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
              [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], (27525, 20920, 1567298545, 1282711153)),
    "test": ((10000, 28, 28), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
             [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], (18454, 41833, 264923200, 215454464)),
}


def pixel_sums(x: torch.Tensor) -> tuple[int, int, int, int]:
    return int(x[0].sum()), int(x[-1].sum()), int(x.sum()), int((x[:, 14, :].long() * torch.arange(28)).sum())


def test_load_mnist_reads_what_torchvision_reads(data_dir):
    mnist = load_mnist(data_dir, val_size=5000)
    splits = {"train": (torch.cat([mnist["val"]["x"], mnist["train"]["x"]]),
                        torch.cat([mnist["val"]["y"], mnist["train"]["y"]])),
              "test": (mnist["test"]["x"], mnist["test"]["y"])}
    for split, (shape, first, counts, sums) in EXPECTED.items():
        x, y = splits[split]
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and tuple(x.shape) == shape, split
        assert torch.bincount(y).tolist() == counts and pixel_sums(x)[2] == sums[2], split
    images, labels = (read_idx(data_dir / "MNIST" / "raw" / f) for f in MNIST_FILES[:2])
    assert labels[:10].tolist() == EXPECTED["train"][1] and pixel_sums(images) == EXPECTED["train"][3]
    assert mnist["test"]["y"][:10].tolist() == EXPECTED["test"][1] and pixel_sums(mnist["test"]["x"]) == EXPECTED["test"][3]


@pytest.mark.parametrize("damage", ["truncated", "not_idx"])
def test_a_damaged_mnist_file_is_one_line(data_dir, tmp_path, damage):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES[:3]:  # linked, not copied: 55 MB
        (raw / name).symlink_to(data_dir / "MNIST" / "raw" / name)
    body = (data_dir / "MNIST" / "raw" / MNIST_FILES[3]).read_bytes()
    (raw / MNIST_FILES[3]).write_bytes(body[:-1] if damage == "truncated" else b"PK\x03\x04" + body[4:])
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"cannot read MNIST in {raw}: {MNIST_FILES[3]} "), msg
    assert read_idx(raw / MNIST_FILES[2]).shape == (10000, 28, 28)
