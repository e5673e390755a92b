"""CelebA for the ``vae`` task: the data set as its publisher serves it, and the faces as the
model reads them (centre-cropped, 64x64, decoded once into a uint8 cache on disk), with the
official partition and, where present, the attributes.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from dlb_tune.datasets import DataSet, Remote, copy_into
from dlb_tune.tasks._common import cache_dir, decode_rgb, load_cached, save_atomic, take_indices
from dlb_tune.tasks.base import DataError, fetch_hint

_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="  # torchvision's CelebA ids

CELEBA_DATA = DataSet(
    "celeba",
    files=(  # ids as in torchvision; SHA-256 and sizes from tensorflow-datasets' celeb_a checksums.tsv
        Remote("img_align_celeba.zip", _DRIVE + "0B7EVK8r0v71pZjFTYXZWM3FlRnM",
               "46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74", 1443490838),
        Remote("list_eval_partition.txt", _DRIVE + "0B7EVK8r0v71pY0NSMzRuSXJEVkk",
               "fc955bcb3ef8fbdf7d5640d9a8693a8431b5f2ee291a5c1449a1549e7e073fe7", 2836386,
               installed="celeba/list_eval_partition.txt"),
        Remote("identity_CelebA.txt", _DRIVE + "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS",
               "c6143857c3e2630ac2da9f782e9c1232e5e59be993a9d44e8a7916c78a6158c0", 3424458,
               installed="celeba/identity_CelebA.txt"),
        Remote("list_attr_celeba.txt", _DRIVE + "0B7EVK8r0v71pblRyaVFSWGxPY0U",
               "f0e5da289d5ccf75ffe8811132694922b60f2af59256ed362afa03fefba324d0", 26721026,
               installed="celeba/list_attr_celeba.txt"),
    ),
    expected=("celeba/list_eval_partition.txt", "celeba/img_align_celeba/*.jpg"),
    install=copy_into("celeba", keep=lambda m: m if m.startswith("img_align_celeba/") else None),
    source="Liu et al., ICCV 2015: mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive)",
    license="non-commercial research use only",
)

CELEBA_SOURCE = ("the CelebA site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html, 'Align&Cropped Images') "
                 "or torchvision.datasets.CelebA(root, download=True)")
SPLITS = ("train", "val", "test")  # partition codes 0, 1, 2 in list_eval_partition.txt
IMAGE_SIZE = 64  # px; the architecture's four stride-2 convs map 64 -> 4
CROP = 148  # px, centre square taken from the official 178x218 images before resizing
CACHE_VERSION = 1  # bump when the cached tensor layout or the crop/resize rule changes
# Validation faces with attributes below which the attribute NMI would be noise: the attributed
# training faces are then held out of training and scored instead (this copy has 0 of 780).
MIN_VAL_ATTRIBUTED = 200

def celeba_root(data_dir: Path) -> Path:
    """The folder holding ``list_eval_partition.txt``: ``data_dir/celeba`` or ``data_dir``."""
    data_dir = Path(data_dir).expanduser()
    for root in (data_dir / "celeba", data_dir):
        if (root / "list_eval_partition.txt").is_file():
            if not (root / "img_align_celeba").is_dir():
                raise DataError(f"{root} has list_eval_partition.txt but no img_align_celeba/ folder of "
                                f"JPEGs; get the aligned images from {CELEBA_SOURCE}; {fetch_hint('vae')}")
            return root
    raise DataError(f"no CelebA under {data_dir}: expected img_align_celeba/*.jpg and "
                    f"list_eval_partition.txt in {data_dir / 'celeba'} (or {data_dir}); "
                    f"get them from {CELEBA_SOURCE}; {fetch_hint('vae')}")


def read_partition(root: Path) -> dict[str, list[str]]:
    """Image file names per split from ``list_eval_partition.txt`` (``name code`` per line)."""
    path = root / "list_eval_partition.txt"
    files: dict[str, list[str]] = {s: [] for s in SPLITS}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{i}: expected '<image>.jpg 0|1|2', got {line!r}")
        files[SPLITS[int(parts[1])]].append(parts[0])
    empty = [s for s in SPLITS if not files[s]]
    if empty:
        raise DataError(f"{path} puts no image in the {', '.join(empty)} split(s)")
    return files


def read_attributes(root: Path) -> tuple[list[str], dict[str, list[int]]]:
    """``list_attr_celeba.txt`` in the official format: a count line, a line of attribute
    names, then ``<image> v1 .. vA`` with -1/1. Returns the names and {image: [0/1, ...]};
    nothing when the file is absent."""
    path = root / "list_attr_celeba.txt"
    if not path.is_file():
        return [], {}
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path}: expected a count line and a line of attribute names first")
    names = lines[1].split()
    rows: dict[str, list[int]] = {}
    for i, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("-1", "1") for v in parts[1:]):
            raise DataError(f"{path}:{i}: expected '<image>.jpg' and {len(names)} values of -1/1")
        rows[parts[0]] = [int(v == "1") for v in parts[1:]]
    if len(rows) != int(lines[0]):
        raise DataError(f"{path}: the count line says {int(lines[0])} images, the file lists {len(rows)}")
    return names, rows


def decode_face(path: Path) -> torch.Tensor:
    """One aligned face as uint8 [3, 64, 64]: as is when already 64x64, otherwise the centre
    148x148 square (the usual CelebA crop) resized to 64x64."""
    from PIL import Image

    def crop(img):
        img = img.convert("RGB")
        if img.size == (IMAGE_SIZE, IMAGE_SIZE):
            return img
        w, h = img.size
        if min(w, h) < CROP:
            raise DataError(f"{path} is {w}x{h}: expected 64x64 or an official aligned face "
                            f"(178x218) to centre-crop to {CROP}")
        left, top = round((w - CROP) / 2), round((h - CROP) / 2)  # torchvision's CenterCrop
        img = img.crop((left, top, left + CROP, top + CROP))
        return img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)  # antialiased

    return decode_rgb(path, crop, listed_in="list_eval_partition.txt")  # [3, 64, 64]


def take(files: list[str], limit: int | None, seed: int = 0) -> list[str]:
    """The first ``limit`` names after a fixed-seed shuffle (all of them, in order, without)."""
    keep = take_indices(len(files), limit, seed)
    return files if keep is None else [files[i] for i in keep.tolist()]


def cache_key(root: Path, files: dict[str, list[str]]) -> str:
    """Hash of what the decoded tensors depend on: the partition file, the chosen names and
    each image's byte size and mtime (a stat per image, no reading)."""
    h = hashlib.sha256(f"v{CACHE_VERSION} size={IMAGE_SIZE} crop={CROP}".encode())
    h.update((root / "list_eval_partition.txt").read_bytes())
    images = root / "img_align_celeba"
    for split in SPLITS:
        h.update(f"[{split}:{len(files[split])}]".encode())
        for name in files[split]:
            try:
                st = (images / name).stat()
            except FileNotFoundError:
                raise DataError(f"missing image {images / name} (listed in list_eval_partition.txt); "
                                f"the full set comes from {CELEBA_SOURCE}") from None
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def decode_splits(root: Path, files: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """{split: uint8 [N, 3, 64, 64]}, from the disk cache when it holds this exact selection."""
    path = cache_dir() / f"celeba-{IMAGE_SIZE}px-{cache_key(root, files)}.pt"
    cached = load_cached(path)
    if cached is not None:
        return cached
    images = root / "img_align_celeba"
    with ThreadPoolExecutor(max_workers=4) as pool:  # PIL releases the GIL while decoding
        out = {s: torch.stack(list(pool.map(decode_face, [images / n for n in files[s]]))) for s in SPLITS}
    save_atomic(out, path)
    return out


def load_celeba(data_dir: Path, limit: int | None = None) -> dict[str, Any]:
    """Train/val/test faces as uint8 [N, 3, 64, 64], with attributes where the file has them:
    ``attrs`` bool [N, A] (False where unknown) and ``has_attrs`` bool [N]."""
    root = celeba_root(data_dir)
    files = {s: take(f, limit) for s, f in read_partition(root).items()}
    images = decode_splits(root, files)
    names, rows = read_attributes(root)
    out: dict[str, Any] = {"attr_names": names}
    for s in SPLITS:
        known = [rows.get(f) for f in files[s]]
        table = [a or [0] * len(names) for a in known]  # all False where unknown
        out[s] = {
            "x": images[s],  # [N, 3, 64, 64] uint8
            "attrs": torch.tensor(table, dtype=torch.bool).view(len(known), len(names)),  # [N, A]
            "has_attrs": torch.tensor([a is not None for a in known], dtype=torch.bool),  # [N]
            "files": files[s],  # image names, in the order of x
        }
    return out


def _rows(split: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The faces of ``split`` where ``keep`` [N] is True, every field alike."""
    return {"x": split["x"][keep], "attrs": split["attrs"][keep], "has_attrs": split["has_attrs"][keep],
            "files": [f for f, k in zip(split["files"], keep.tolist()) if k]}


def with_nmi_split(data: dict[str, Any], min_val: int = MIN_VAL_ATTRIBUTED) -> dict[str, Any]:
    """``data`` plus split ``nmi``: the faces the discrete codes' attribute NMI is scored on.

    They are the validation faces with attributes; when fewer than ``min_val`` of those exist,
    the training faces with attributes are moved out of ``train`` into ``nmi`` too, so the
    codes are never scored on faces they were trained on. ``val`` itself is unchanged (the
    validation ELBO stays comparable). ``held_out``: how many training faces were moved.
    """
    val, train = data["val"], data["train"]
    nmi = _rows(val, val["has_attrs"])
    held = 0
    if len(nmi["files"]) < min_val and bool(train["has_attrs"].any()):
        moved = _rows(train, train["has_attrs"])
        held = len(moved["files"])
        nmi = {k: torch.cat([nmi[k], moved[k]]) if k != "files" else nmi[k] + moved[k] for k in nmi}
        data = {**data, "train": _rows(train, ~train["has_attrs"])}
    return {**data, "nmi": nmi, "held_out": held}
