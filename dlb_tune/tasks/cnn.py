"""CNN image classification: the Grocery Store dataset (Klasson et al., WACV 2019), or MNIST.

Blocks of conv 3x3 -> batch norm -> ReLU -> max pool 2x2 (or, ``block: separable``, depthwise
3x3 -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU -> max pool), then a head: flatten + FC + dropout
(the course net) or global average pooling + linear (small nets). The search trades validation
accuracy against parameter count; ``summarize`` lists the Pareto front and the best net under
100K parameters, and ``count_params`` sizes a config without data, for a space's ``max_params``.

JPEG decoding is paid once per machine: ``load_data`` decodes every split into a uint8 tensor
cache on disk (``$DLB_TUNE_CACHE`` or ``~/.cache/dlb_tune``), keyed by the split files, the image
size and each image's size and mtime. Trials get the decoded tensors from Ray's object store.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlb_tune.datasets import DataSet, Remote, unzip_one
from dlb_tune.tasks._common import (LR_SCHEDULES, MNIST_DATA, OPTIMIZERS, cache_dir, confusion_matrix, decode_rgb,
                                    load_cached, load_mnist, lr_factor, make_optimizer, save_atomic, take_indices)
from dlb_tune.tasks.base import (DataError, Task, TrialContext, TrialError, TrialSummary, Trials, check_finite,
                                 fetch_hint, register)

GROCERY_URL = "https://github.com/marcusklasson/GroceryStoreDataset"
SPLITS = ("train", "val", "test")
CACHE_VERSION = 1  # bump when the cached tensor layout or the resize rule changes


@dataclass
class CNNConfig:
    dataset: str = "grocery"  # "grocery" (Grocery Store, RGB) or "mnist" (grey digits)
    labels: str = "coarse"  # grocery label set: "coarse" (43 classes) or "fine" (81)
    image_size: int = 64  # px, side of the square images (grocery only; MNIST stays 28)
    depth: int = 4  # conv blocks, 2..6; each halves the resolution (ceil, so never below 1 px)
    base_width: int = 32  # channels of the first block; 32 is the course net
    width_growth: float = 2.0  # channel multiplier from one block to the next
    block: str = "conv"  # "conv": conv 3x3 (course net); "separable": depthwise 3x3 + pointwise 1x1, ~1/8 the weights
    head: str = "fc"  # "fc": flatten + FC + ReLU + dropout (course net); "gap": global avg pool
    fc_hidden: int = 512  # hidden units of the "fc" head; unused by "gap"
    dropout: float = 0.3  # before the final linear layer, both heads
    optimizer: str = "adam"  # "adam", "adamw" or "sgd" (momentum 0.9, Nesterov)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw)
    batch_size: int = 64  # examples per step
    lr_schedule: str = "cosine"  # "none", "cosine", "step" (x0.1 at 50% and 75%) or "onecycle", per step
    augment: bool = True  # random flip, rotation/scale/shift, colour jitter on training batches
    label_smoothing: float = 0.0  # cross-entropy smoothing; 0.1 helps small nets a little
    tta: bool = False  # evaluate on each image and its mirror image, averaging logits (RGB only)


# ---------------------------------------------------------------------------------- data


def grocery_root(data_dir: Path) -> Path:
    """The folder holding ``train.txt`` etc.: ``data_dir`` itself, its ``dataset/``, its
    ``GroceryStoreDataset/dataset/`` or its ``grocery/GroceryStoreDataset/dataset/``."""
    data_dir = Path(data_dir).expanduser()
    for sub in ("", "dataset", "GroceryStoreDataset/dataset", "grocery/GroceryStoreDataset/dataset"):
        root = data_dir / sub
        if (root / "train.txt").is_file():
            missing = [f for f in ("val.txt", "test.txt", "classes.csv") if not (root / f).is_file()]
            if missing:
                raise DataError(f"{root} has train.txt but lacks {', '.join(missing)}; "
                                f"expected the Grocery Store layout from {GROCERY_URL}")
            return root
    raise DataError(
        f"no Grocery Store dataset under {data_dir}: expected train.txt, val.txt, test.txt and "
        f"classes.csv in {data_dir}/GroceryStoreDataset/dataset (or {data_dir}/dataset); "
        f"get it from {GROCERY_URL}; {fetch_hint('cnn')}"
    )


def read_classes(root: Path) -> tuple[list[str], list[str]]:
    """Fine and coarse class names, indexed by id, from ``classes.csv``."""
    fine: dict[int, str] = {}
    coarse: dict[int, str] = {}
    try:
        with open(root / "classes.csv", newline="") as f:
            for row in list(csv.reader(f))[1:]:  # first row is the header
                if not row:
                    continue
                fine[int(row[1])] = row[0]
                coarse[int(row[3])] = row[2]
    except (ValueError, IndexError) as e:
        raise DataError(f"{root / 'classes.csv'} is malformed ({e}); expected rows "
                        "'fine name, fine id, coarse name, coarse id, ...'") from None
    if sorted(fine) != list(range(len(fine))) or sorted(coarse) != list(range(len(coarse))):
        raise DataError(f"{root / 'classes.csv'}: class ids are not 0..n-1")
    return [fine[i] for i in range(len(fine))], [coarse[i] for i in range(len(coarse))]


def read_split(root: Path, split: str, n_fine: int, n_coarse: int) -> list[tuple[str, int, int]]:
    """``(relative path, fine id, coarse id)`` per line of ``<split>.txt``."""
    path = root / f"{split}.txt"
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            rel, fine, coarse = parts[0], int(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise DataError(f"{path}:{i}: expected 'path, fine_id, coarse_id', got {line!r}") from None
        if not (0 <= fine < n_fine and 0 <= coarse < n_coarse):
            raise DataError(f"{path}:{i}: class id out of range of classes.csv: {line!r}")
        rows.append((rel, fine, coarse))
    if not rows:
        raise DataError(f"{path} lists no images")
    return rows


def decode_image(path: Path, size: int) -> torch.Tensor:
    """One JPEG as uint8 [3, size, size]: shorter side scaled to ``size``, centre crop."""
    from PIL import Image, ImageOps

    def fit(img):
        img.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4, 1/8 scale when enough
        return ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.BILINEAR)

    return decode_rgb(path, fit)


def grocery_cache_key(root: Path, splits: dict[str, list], size: int) -> str:
    """Hash of what the decoded tensors depend on; a stat per image, no reading of images."""
    h = hashlib.sha256(f"v{CACHE_VERSION} size={size}".encode())
    for name in ("classes.csv", *(f"{s}.txt" for s in SPLITS)):
        h.update((root / name).read_bytes())
    for split, rows in splits.items():
        for rel, _, _ in rows:
            try:
                st = (root / rel).stat()
            except FileNotFoundError:
                raise DataError(f"missing image {root / rel} (listed in {split}.txt)") from None
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def decode_grocery(root: Path, size: int) -> dict[str, Any]:
    """All splits decoded, with both label sets: the content of one cache file."""
    fine_names, coarse_names = read_classes(root)
    splits = {s: read_split(root, s, len(fine_names), len(coarse_names)) for s in SPLITS}
    path = cache_dir() / f"grocery-{size}px-{grocery_cache_key(root, splits, size)}.pt"
    cached = load_cached(path)
    if cached is not None:
        return cached
    out: dict[str, Any] = {"fine_names": fine_names, "coarse_names": coarse_names}
    for split, rows in splits.items():
        out[split] = {
            "x": torch.stack([decode_image(root / rel, size) for rel, _, _ in rows]),  # [N,3,H,W]
            "fine": torch.tensor([r[1] for r in rows]),  # [N] int64
            "coarse": torch.tensor([r[2] for r in rows]),  # [N] int64
        }
    save_atomic(out, path)
    return out


def load_grocery(data_dir: Path, labels: str, size: int) -> dict[str, Any]:
    if labels not in ("coarse", "fine"):
        raise DataError(f"labels must be 'coarse' or 'fine', got {labels!r}")
    raw = decode_grocery(grocery_root(data_dir), size)
    out: dict[str, Any] = {s: {"x": raw[s]["x"], "y": raw[s][labels]} for s in SPLITS}
    out["classes"] = raw[f"{labels}_names"]
    return out


def load_mnist_images(data_dir: Path, limit: int | None) -> dict[str, Any]:
    """MNIST as uint8 [N, 1, 28, 28]; the splits of the ``fcn`` task (val: 5,000 train images)."""
    splits = load_mnist(data_dir, limit=limit)  # x: uint8 [N, 28, 28]
    data: dict[str, Any] = {s: {"x": d["x"].unsqueeze(1), "y": d["y"]} for s, d in splits.items()}
    data["classes"] = [str(d) for d in range(10)]
    return data


def take(split: dict[str, torch.Tensor], limit: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """At most ``limit`` examples: the first after a fixed-seed shuffle, in file order."""
    keep = take_indices(len(split["y"]), limit, seed)
    return split if keep is None else {k: v[keep.sort().values] for k, v in split.items()}


# --------------------------------------------------------------------------------- model


def block_widths(depth: int, base_width: int, width_growth: float) -> list[int]:
    return [max(1, round(base_width * width_growth**i)) for i in range(depth)]


def conv_layers(block: str, c: int, w: int) -> list[nn.Module]:
    """One block's convolutions, ``c`` -> ``w`` channels, size kept; bias is redundant before batch norm."""
    if block == "separable":  # 9c + cw weights instead of 9cw
        return [nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                nn.Conv2d(c, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
    return [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]


def build_model(cfg: CNNConfig, in_ch: int, n_classes: int, image_size: int) -> nn.Sequential:
    """[B, in_ch, S, S] -> [B, n_classes] logits."""
    if cfg.head not in ("fc", "gap"):
        raise TrialError(f"head must be 'fc' or 'gap', got {cfg.head!r}")
    layers: list[nn.Module] = []
    c, s = in_ch, image_size
    for i, w in enumerate(block_widths(cfg.depth, cfg.base_width, cfg.width_growth)):
        # the first block is a plain conv either way (MobileNet's stem): a depthwise 3x3 over the
        # colour channels alone sees no colour, and a full one costs only 27 x its width
        layers += [*conv_layers(cfg.block if i else "conv", c, w), nn.MaxPool2d(2, ceil_mode=True)]
        c, s = w, math.ceil(s / 2)  # ceil: 6 blocks on 28 px end at 1 px, not 0
    if cfg.head == "fc":
        layers += [nn.Flatten(), nn.Linear(c * s * s, cfg.fc_hidden), nn.ReLU(inplace=True),
                   nn.Dropout(cfg.dropout), nn.Linear(cfg.fc_hidden, n_classes)]
    else:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c, n_classes)]
    return nn.Sequential(*layers)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# classes per label set of the Grocery Store dataset (its classes.csv; tests/test_cnn.py checks)
GROCERY_CLASSES = {"coarse": 43, "fine": 81}


def input_shape(cfg: CNNConfig) -> tuple[int, int, int]:
    """(channels, classes, image side) of the data ``cfg``'s data fields select."""
    if cfg.dataset == "mnist":
        return 1, 10, 28
    return 3, GROCERY_CLASSES[cfg.labels], cfg.image_size


# -------------------------------------------------------------------------- augmentation


def augment_batch(x: torch.Tensor, g: torch.Generator, colour: bool) -> torch.Tensor:
    """Random flip (when ``colour``: product photos, not digits), rotation +-15 deg, zoom 0.9x to
    1.3x (a random crop of 77-100% of the side), shift +-10%, and for RGB brightness, contrast
    and saturation +-25%; x: [B,C,H,W] in [0,1]."""
    b = x.shape[0]
    r = torch.rand(8, b, generator=g).to(x.device) * 2 - 1  # [8, B] uniform in [-1, 1]
    angle, scale = r[0] * math.radians(15), 1.1 + 0.2 * r[1]
    flip = torch.where(r[2] > 0, -1.0, 1.0) if colour else torch.ones_like(r[2])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, 0.1 * r[3]], 1),
                         torch.stack([sin * flip, cos, 0.1 * r[4]], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)
    if not colour:
        return x
    grey = x.mean(1, keepdim=True)  # [B,1,H,W]
    x = grey + (x - grey) * (1 + 0.25 * r[5]).view(b, 1, 1, 1)  # saturation
    x = x * (1 + 0.25 * r[6]).view(b, 1, 1, 1)  # brightness
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * (1 + 0.25 * r[7]).view(b, 1, 1, 1) + mean).clamp(0, 1)  # contrast


# ---------------------------------------------------------------------------------- data set

_GROCERY_COMMIT = "fc80ba90f803d79d0383df52c5a4ac5de99ff6fc"  # the commit grocery.sha256 was taken at


def _grocery_member(name: str) -> str | None:
    """``<repo>-<ref>/dataset/...`` minus the iconic images (the loader reads only the splits)."""
    parts = name.split("/")[1:]  # the archive's top folder is named after the ref: drop it
    if len(parts) < 2 or parts[0] != "dataset" or parts[1].startswith("iconic"):
        return None
    return "/".join(["grocery", "GroceryStoreDataset", *parts])


GROCERY_DATA = DataSet(
    "grocery",
    files=(Remote(f"GroceryStoreDataset-{_GROCERY_COMMIT}.zip",
                  f"https://github.com/marcusklasson/GroceryStoreDataset/archive/{_GROCERY_COMMIT}.zip", None),),
    expected=tuple(f"grocery/GroceryStoreDataset/dataset/{f}" for f in ("train.txt", "val.txt", "test.txt", "classes.csv")),
    install=unzip_one("", _grocery_member),
    source="Klasson et al., WACV 2019: github.com/marcusklasson/GroceryStoreDataset (pinned commit)",
    license="MIT",
    note="GitHub builds archives on request, not byte-stable: the unpacked files are checked instead",
    manifest="grocery.sha256",  # sha256sum of every file the loader reads, at _GROCERY_COMMIT
    manifest_root="grocery/GroceryStoreDataset",
)

# ---------------------------------------------------------------------------------- task


@register
class CNNTask(Task):
    name = "cnn"
    Config = CNNConfig
    data_fields = ("dataset", "labels", "image_size")
    data_sets = (GROCERY_DATA, MNIST_DATA)  # MNIST: the dataset=mnist variant
    smoke = {"depth": 2, "base_width": 4, "head": "gap", "batch_size": 32, "augment": False}
    allowed_values = {"dataset": ("grocery", "mnist"), "labels": ("coarse", "fine"), "head": ("fc", "gap"),
                      "block": ("conv", "separable"), "optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES}

    @classmethod
    def count_params(cls, config: CNNConfig) -> int:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return count_params(build_model(config, *input_shape(config)))

    @classmethod
    def load_data(cls, data_dir: Path, config: CNNConfig, limit: int | None = None) -> dict[str, Any]:
        if config.dataset == "grocery":
            data = load_grocery(data_dir, config.labels, config.image_size)
        elif config.dataset == "mnist":
            data = load_mnist_images(data_dir, limit)
        else:
            raise DataError(f"dataset must be 'grocery' or 'mnist', got {config.dataset!r}")
        for s in SPLITS:
            data[s] = take(data[s], limit)
        x = data["train"]["x"].float().div_(255)  # [N,C,H,W]
        data["mean"], data["std"] = x.mean((0, 2, 3)), x.std((0, 2, 3))  # [C], from train only
        return data

    def __init__(self, config: CNNConfig, data: dict[str, Any], ctx: TrialContext) -> None:
        super().__init__(config, data, ctx)
        dev = ctx.device
        self.x = {s: data[s]["x"].to(dev) for s in SPLITS}  # uint8 [N,C,S,S], moved once
        self.y = {s: data[s]["y"].to(dev) for s in SPLITS}  # [N]
        c, size = self.x["train"].shape[1], self.x["train"].shape[-1]
        self.mean = data["mean"].to(dev).view(1, c, 1, 1)
        self.std = data["std"].to(dev).view(1, c, 1, 1)
        # channels_last: about 1.5x faster convolutions on CPU (oneDNN), also the fast path on GPU
        self.model = build_model(config, c, len(data["classes"]), size).to(dev, memory_format=torch.channels_last)
        self.net = ctx.wrap_model(self.model)  # DDP under Ray Train; self.model for evaluation
        self.opt = make_optimizer(config.optimizer, self.model.parameters(), config.lr, config.weight_decay)
        steps = len(list(ctx.batches(len(self.y["train"]), config.batch_size, shuffle=False)))
        total = max(1, steps * ctx.max_epochs)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda i: lr_factor(config.lr_schedule, i / total))
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def inputs(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 [B,C,S,S] -> normalised float [B,C,S,S], augmented when training."""
        x = x.float().div_(255)
        if train and self.config.augment:
            x = augment_batch(x, self.ctx.generator, colour=x.shape[1] == 3)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.net.train()
        loss_sum, correct, n = 0.0, 0, 0
        for idx in self.ctx.batches(len(self.y["train"]), self.config.batch_size):
            if len(idx) < 2:  # batch norm cannot train on one example at 1x1 px (deep nets)
                continue
            idx = idx.to(self.ctx.device)
            y = self.y["train"][idx]
            logits = self.net(self.inputs(self.x["train"][idx], train=True))  # [B, classes]
            loss = self.loss_fn(logits, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
        t = self.ctx.sum_across_workers({"loss": loss_sum, "correct": correct, "n": n})
        return {"loss": check_finite(t["loss"] / t["n"], "training loss"), "acc": t["correct"] / t["n"]}

    @torch.no_grad()
    def predict(self, split: str) -> torch.Tensor:
        """Logits [N, classes] for a whole split; every worker evaluates all of it."""
        self.model.eval()
        x = self.x[split]
        return torch.cat([self.logits(self.inputs(x[i : i + 512], train=False)) for i in range(0, len(x), 512)])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B,C,S,S] -> [B, classes]; with ``tta``, averaged with the mirror image's (not digits)."""
        out = self.model(x)
        if self.config.tta and x.shape[1] == 3:
            out = (out + self.model(x.flip(-1))) / 2
        return out

    def evaluate(self, split: str) -> dict[str, float]:
        logits, y = self.predict(split), self.y[split]
        loss = F.cross_entropy(logits, y).item()
        return {"loss": check_finite(loss, f"{split} loss"), "acc": (logits.argmax(1) == y).float().mean().item()}

    def state_dict(self) -> dict[str, Any]:
        # ctx.generator (shuffling, augmentation) is saved by the trainable with every checkpoint
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])

    def trial_metrics(self) -> dict[str, float]:
        return {"params": count_params(self.model)}

    def test_report(self, out_dir: Path) -> dict[str, Any]:
        pred, y = self.predict("test").argmax(1).cpu(), self.y["test"].cpu()
        names = self.data["classes"]
        k = len(names)
        confusion = confusion_matrix(pred, y, k)  # [true, predicted]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_confusion_csv(confusion, names, out_dir / "confusion.csv")
        wrong = (pred != y).nonzero().flatten()
        plot_misclassified(self.x["test"].cpu(), y, pred, wrong, names, out_dir / "misclassified.png")
        per_class = {names[i]: round(confusion[i, i].item() / confusion[i].sum().item(), 4)
                     for i in range(k) if confusion[i].sum() > 0}
        return {"per_class_acc": per_class, "worst_classes": sorted(per_class, key=per_class.get)[:5],
                "confusion_matrix": "confusion.csv", "misclassified": "misclassified.png"}

    @classmethod
    def summarize(cls, trials: Trials) -> dict[str, Any]:
        return summarize_trials(trials)


# ------------------------------------------------------------------------------- reports

PARAM_LIMIT = 100_000  # "small net" bar of the course exercise


def write_confusion_csv(confusion: torch.Tensor, names: list[str], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *names])
        for name, row in zip(names, confusion.tolist()):
            w.writerow([name, *row])


def plot_misclassified(x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, wrong: torch.Tensor,
                       names: list[str], path: Path, n: int = 24) -> None:
    """A grid of up to ``n`` misclassified test images (evenly spread), 'true -> predicted'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pick = wrong[torch.linspace(0, len(wrong) - 1, min(n, len(wrong))).long()] if len(wrong) else wrong
    cols = 6
    rows = max(1, math.ceil(len(pick) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, pick.tolist()):
        img = x[i].permute(1, 2, 0).squeeze(-1).numpy()  # [S,S,3] or [S,S]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(f"{names[y[i]]}\n-> {names[pred[i]]}", fontsize=8)
    fig.suptitle(f"misclassified test images: {len(wrong)} of {len(y)}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summarize_trials(trials: Trials) -> dict[str, Any]:
    """Pareto front of best validation accuracy (max) against parameters (min), by size, and the
    best trial under ``PARAM_LIMIT`` parameters: in every sweep, multi-objective or not."""
    sized = any("params" in t.metrics for t in trials)
    if trials.metric != "val_acc" or not sized or all(t.best is None for t in trials):
        return {}  # no trial reported what ranks or sizes the nets
    scored = [t for t in trials if t.status != "errored" and t.best is not None and "params" in t.metrics]
    front = sorted((t for t in scored if not any(dominates(o, t) for o in scored)), key=lambda t: t.metrics["params"])
    small = [t for t in scored if t.metrics["params"] < PARAM_LIMIT]
    best_small = max(small, key=lambda t: t.best) if small else None
    return {"pareto": [trial_summary(t) for t in front],
            f"best_under_{PARAM_LIMIT // 1000}k_params": trial_summary(best_small) if best_small else None}


def dominates(a: TrialSummary, b: TrialSummary) -> bool:
    """``a`` is at least as accurate and as small as ``b``, and better on one of the two."""
    va, vb = (a.best, -a.metrics["params"]), (b.best, -b.metrics["params"])
    return all(x >= y for x, y in zip(va, vb)) and va != vb


def trial_summary(t: TrialSummary) -> dict[str, Any]:
    return {"trial_id": t.trial_id, "val_acc": float(t.best), "params": int(t.metrics["params"]), "config": t.config}
