"""What several tasks share: the MNIST loader, example selection for limited runs, JPEG decoding
and its on-disk cache, the optimiser factory, learning-rate schedules and the confusion matrix.

Everything here is plain torch (no Ray); a task imports what it needs by name.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch

from dlb_tune import places
from dlb_tune.datasets import DataSet, Remote, gunzip_into
from dlb_tune.tasks.base import DataError, TrialError, fetch_hint

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "step", "onecycle")

# --- data ---------------------------------------------------------------------------------------


# MNIST as the fcn task, cnn's dataset=mnist variant and `new-task`'s template read it
_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror
MNIST_DATA = DataSet(
    "mnist",
    files=tuple(  # SHA-256 as pinned by users of the cvdf/ossci mirrors (LeCun's original bytes)
        Remote(name, _MNIST_MIRROR + name, sha, size) for name, sha, size in (
            ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        )
    ),
    expected=("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte",
              "MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"),
    install=gunzip_into("MNIST/raw"),
    source="LeCun, Cortes, Burges: yann.lecun.com/exdb/mnist (torchvision's mirror)",
    license="CC BY-SA 3.0",
)


def take_indices(n: int, limit: int | None, seed: int = 0) -> torch.Tensor | None:
    """Which of ``n`` examples a run limited to ``limit`` keeps: the first ``limit`` of a
    fixed-seed permutation, in drawn order; None when it keeps them all."""
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]


def load_mnist(data_dir: Path, val_size: int = 5000, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """MNIST from ``data_dir/MNIST/raw`` as uint8 images [N, 28, 28] and int64 labels.

    The validation split is ``val_size`` training images chosen with a fixed seed; the test
    split is the official 10,000. Downloads only when the files are missing and the network is up.
    """
    data_dir = Path(data_dir)
    raw = data_dir / "MNIST" / "raw"
    if not all((raw / f).exists() for f in MNIST_FILES):
        _download_mnist(data_dir, raw)
    try:
        train_x, train_y, test_x, test_y = (read_idx(raw / f) for f in MNIST_FILES)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read MNIST in {raw}: {e}") from None
    if not 0 < val_size < len(train_x):
        raise DataError(f"val_size must be between 1 and {len(train_x) - 1}, got {val_size}")
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size], order[val_size:]
    train_y, test_y = train_y.long(), test_y.long()  # int64 labels, as torchvision's MNIST gives them
    splits = {
        "train": (train_x[train_idx], train_y[train_idx]),
        "val": (train_x[val_idx], train_y[val_idx]),
        "test": (test_x, test_y),
    }
    return {k: {"x": x[:limit].contiguous(), "y": y[:limit].contiguous()} for k, (x, y) in splits.items()}


def read_idx(path: Path) -> torch.Tensor:
    """One IDX file of unsigned bytes (MNIST's format) as uint8 [d1, ..., dn].

    Read here rather than through torchvision's ``MNIST``: importing torchvision costs about as
    much as importing torch, in every sweep driver, for four files of a few lines' format.
    Layout: 2 zero bytes, type 0x08 (unsigned byte), n; then n big-endian uint32 sizes; the bytes.
    """
    data = Path(path).read_bytes()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{Path(path).name} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(dims):
        raise ValueError(f"{Path(path).name} holds {len(body)} bytes where its header says {dims}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(dims)


def _download_mnist(data_dir: Path, raw: Path) -> None:
    from torchvision.datasets import MNIST

    expected = f"{raw}/{{{','.join(MNIST_FILES)}}}"
    host = urlparse(MNIST.mirrors[0]).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        raise DataError(
            f"MNIST not found: expected {expected} (the four uncompressed IDX files from "
            f"yann.lecun.com/exdb/mnist, torchvision's MNIST/raw layout), and no network to download them; "
            f"{fetch_hint('fcn')} (--mirror URL for a local copy)"
        ) from None
    try:
        MNIST(str(data_dir), train=True, download=True)
    except Exception as e:  # noqa: BLE001 - any download failure becomes one line
        raise DataError(f"MNIST missing from {raw} and the download failed: {e}") from None


def decode_rgb(path: Path, resize: Callable[[Any], Any], listed_in: str = "") -> torch.Tensor:
    """One image file as uint8 [3, H, W]: ``resize`` turns the opened PIL image into the RGB image
    to keep (it may call ``draft`` first: JPEGs then decode at a fraction of their size).
    A missing or unreadable file is a ``DataError``; ``listed_in`` names the list that asked for it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = resize(img)
    except FileNotFoundError:
        raise DataError(f"missing image {path}" + (f" (listed in {listed_in})" if listed_in else "")) from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"unreadable image {path}: {e}") from None
    w, h = img.size
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(h, w, 3).permute(2, 0, 1).contiguous()


def cache_dir() -> Path:
    """Where decoded datasets are kept (``places.decoded_dir``)."""
    return places.decoded_dir()


def load_cached(path: Path) -> Any | None:
    """The cached object at ``path``, or None when absent, truncated or foreign (decode again)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:
        return None


def save_atomic(obj: Any, path: Path) -> None:
    """Write via a temporary file and rename, so concurrent sweeps never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- training -----------------------------------------------------------------------------------


def make_optimizer(name: str, params: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` (decoupled decay) or ``sgd`` (momentum 0.9, Nesterov). ``params`` may be
    parameter groups; a group's own ``weight_decay`` wins over ``weight_decay``."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise TrialError(f"unknown optimizer '{name}'; known: {', '.join(OPTIMIZERS)}")


def check_lr_schedule(name: str) -> None:
    if name not in LR_SCHEDULES:
        raise TrialError(f"unknown lr_schedule '{name}'; known: {', '.join(LR_SCHEDULES)}")


def lr_factor(lr_schedule: str, t: float) -> float:
    """Multiplier of the peak learning rate at training progress ``t`` in [0, 1]: ``none``,
    ``cosine`` (to 0 at the end), ``step`` (x0.1 at 50% and 75%) or ``onecycle`` (linear warm-up
    over 30% from peak/25, then cosine to ~0)."""
    check_lr_schedule(lr_schedule)
    if lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if lr_schedule == "step":
        return 0.1 ** ((t >= 0.5) + (t >= 0.75))
    if lr_schedule == "onecycle":
        if t < 0.3:
            return 0.04 + 0.96 * t / 0.3
        return 0.5 * (1 + math.cos(math.pi * min((t - 0.3) / 0.7, 1.0)))
    return 1.0  # none


# --- evaluation ---------------------------------------------------------------------------------


def confusion_matrix(pred: torch.Tensor, true: torch.Tensor, n: int) -> torch.Tensor:
    """[n, n] counts, rows = true class, columns = predicted class."""
    return torch.bincount(true.cpu() * n + pred.cpu(), minlength=n * n).reshape(n, n)


# --- figures -------------------------------------------------------------------------------------


def save_labelled_grid(grid: torch.Tensor, path: Path, title: str, row_labels: list[str], col_labels: list[str],
                       cell: int, padding: int = 2) -> Path:
    """A ``torchvision.utils.make_grid`` image [3, H, W] in [0, 1] as a PNG with a title and a
    label on every row and column, so the figure says what it shows without its caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = grid.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    height, width = img.shape[:2]
    label_w = 0.12 * max((len(s) for s in row_labels), default=0)  # inches for the longest row label
    fig_w = width / 80 + label_w + 0.4
    title = textwrap.fill(title, width=max(24, int(fig_w * 13)))  # 9 pt characters per inch, about
    fig, ax = plt.subplots(figsize=(fig_w, height / 80 + 0.75 + 0.18 * title.count("\n")), dpi=100)
    ax.imshow(img, interpolation="nearest")
    n_rows, n_cols = ((size - padding) // (cell + padding) for size in (height, width))
    row_labels, col_labels = row_labels[:n_rows], col_labels[:n_cols]  # a short split fills fewer rows
    centre = [padding + i * (cell + padding) + cell / 2 for i in range(max(n_rows, n_cols))]
    ax.set_yticks(centre[:len(row_labels)], row_labels, fontsize=8)
    ax.set_xticks(centre[:len(col_labels)], col_labels, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
