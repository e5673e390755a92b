"""Task ``emotion``: tweet emotion (happiness / neutral / sadness) with RNN, GRU or LSTM cells.

Data: ``<data_dir>/emotions/{train,test}Emotions.csv`` (columns ``emotion,content``). Validation
is a stratified 10% of the training file (seed 0); the test file is read once, at the end.
Tweets are cleaned GloVe-Twitter style (``_text.clean_tweet``), the vocabulary comes from the
training part only, and every sequence keeps its length: the recurrent net runs on packed
sequences, so the classifier reads the state at each tweet's last real token (forward) and at
its first token (backward direction), never a padding step.

Embeddings: ``glove`` (any GloVe text file; words it lacks start random) or ``random``.
``freeze_embedding`` fixes the pretrained rows only; words without a pretrained vector (and the
special tokens) keep learning, since a frozen random vector means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlb_tune.datasets import DataSet, Remote, Staging, copy_into, extract
from dlb_tune.tasks import _text
from dlb_tune.tasks._common import LR_SCHEDULES, OPTIMIZERS, confusion_matrix, lr_factor, make_optimizer
from dlb_tune.tasks.base import (DataError, Task, TrialContext, TrialError, TrialSummary, Trials, check_finite,
                                 fetch_hint, register)


# --- data sets ------------------------------------------------------------------------------------

_EMOTIONS = ("https://raw.githubusercontent.com/uriMen/text-classification-with-pytorch/"
             "e3f69aeed6323145ed12a0dcef9f2c820afcfc38/data/")

EMOTIONS_DATA = DataSet(
    "emotions",
    files=tuple(  # sha256sum at the pinned commit (dlb_tune/checksums/SOURCES.md)
        Remote(name, _EMOTIONS + name, sha, size, installed=f"emotions/{name}") for name, sha, size in (
            ("trainEmotions.csv", "c53b7fa8d9b0fa3da96ba380998ef284e2c1e30bbfec73c8b41cc906cf8fe9d9", 1189823),
            ("testEmotions.csv", "bf43a8178985add29afae12ad19d9e26f65b05023707aae47553f4cce9877c5e", 411109),
        )
    ),
    expected=("emotions/trainEmotions.csv", "emotions/testEmotions.csv"),
    install=copy_into("emotions"),
    source="tweet-emotion course data: github.com/uriMen/text-classification-with-pytorch (pinned commit)",
    license="unstated (the repository publishes none)",
)


def _install_glove(files: dict[str, Path], stage: Staging) -> None:
    """The one text file of the size asked for (``--glove-dim``), out of the 1.5 GB archive."""
    (archive,) = files.values()
    wanted = f"glove.twitter.27B.{stage.glove_dim}d.txt"
    extract(archive, stage, "glove", lambda m: wanted if m.split("/")[-1] == wanted else None)


GLOVE_DATA = DataSet(
    "glove",
    # three independent downloaders pin this hash (dlb_tune/checksums/SOURCES.md)
    files=(Remote("glove.twitter.27B.zip", "https://nlp.stanford.edu/data/glove.twitter.27B.zip",
                  "792af52f795d1a32c9842a3240f5f3fe5e941a8ff6df5eb0f9d668092ebc019c", 1520408563),),
    expected=("glove/glove.twitter.27B.{dim}d*.txt",),  # the subset too: *.25d.subset12k.txt
    install=_install_glove,
    source="Pennington et al. 2014: nlp.stanford.edu/projects/glove (Twitter, 27B tokens)",
    license="PDDL 1.0",
    manifest="glove.sha256",  # the 50, 100 and 200-d text files too, for `data list --verify`
    manifest_root="glove",
)

CLASSES = ("happiness", "neutral", "sadness")
FILES = ("trainEmotions.csv", "testEmotions.csv")
DEFAULT_GLOVE = "glove/glove.twitter.27B.25d.subset12k.txt"  # relative to the data dir
FULL_GLOVE = tuple(f"glove/glove.twitter.27B.{d}d.txt" for d in (100, 200, 50, 25))  # as `data fetch` installs them
VAL_FRACTION, SPLIT_SEED = 0.1, 0  # the validation split: fixed, so every trial sees the same one
CELLS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
POOLINGS = ("last", "max", "last+max")
EMBEDDINGS = ("glove", "random")
BUCKET_POOL = 16  # batches sorted together by length; larger pools pad less but shuffle less


@dataclass
class EmotionConfig:
    cell: str = "gru"  # rnn_tanh | rnn_relu (Elman RNN) | gru | lstm
    bidirectional: bool = True  # a backward pass too; the classifier reads both final states
    num_layers: int = 1  # stacked recurrent layers, 1 to 3
    hidden_size: int = 128  # units per direction and layer
    pooling: str = "last"  # classifier input: last | max (over time, padding masked) | last+max
    dropout: float = 0.3  # between stacked layers and before the classifier
    emb_dropout: float = 0.2  # on the word vectors, before the recurrent net
    embedding: str = "glove"  # glove | random (learned from scratch)
    embedding_dim: int = 100  # width of a random embedding; pretrained ones take their file's
    freeze_embedding: bool = False  # keep pretrained rows fixed (OOV rows still learn)
    optimizer: str = "adam"  # adam | adamw (decoupled decay) | sgd (momentum 0.9, Nesterov)
    lr: float = 2e-3  # peak learning rate
    lr_schedule: str = "cosine"  # none | cosine (to 0 over max_epochs) | step | onecycle, per epoch
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw); never on the embedding
    batch_size: int = 64  # tweets per step
    grad_clip: float = 1.0  # max global gradient norm; 0 = off (RNNs can explode without it)
    class_weights: bool = False  # weight the loss by inverse class frequency of the train split
    # data: fixed for a sweep (loaded once)
    min_freq: int = 2  # a training word seen fewer times is <unk>; 2 drops typos and names
    max_len: int = 64  # tokens kept per tweet; cleaned tweets here: all but one <= 57 tokens
    glove_path: str = ""  # GloVe text file (.txt or .txt.gz); "" = a fetched glove.twitter.27B.*d.txt, else the subset


# ------------------------------------------------------------------------------------- data


def emotions_dir(data_dir: Path) -> Path:
    """``data_dir/emotions``, or ``data_dir`` itself when it holds the CSV files."""
    data_dir = Path(data_dir).expanduser()
    for folder in (data_dir / "emotions", data_dir):
        if all((folder / f).is_file() for f in FILES):
            return folder
    raise DataError(
        f"no tweet-emotion data under {data_dir}: expected {data_dir}/emotions/{{{','.join(FILES)}}} "
        f"(columns emotion,content; the course's tweet-emotion CSV files); {fetch_hint('emotion')}"
    )


def glove_file(data_dir: Path, glove_path: str) -> Path:
    """The GloVe file: ``glove_path`` (absolute, or relative to the data dir or the working dir);
    by default a full Twitter file `dlb-tune data fetch` installed (100-d first, the course's),
    else the 25-d Twitter subset, in the data dir or beside it."""
    data_dir = Path(data_dir).expanduser()
    if glove_path:
        path = Path(glove_path).expanduser()
        return path if path.is_absolute() or not (data_dir / path).exists() else data_dir / path
    for name in FULL_GLOVE + (DEFAULT_GLOVE,):
        for base in (data_dir, data_dir.parent):
            if (base / name).exists():
                return base / name
    return data_dir / DEFAULT_GLOVE


def read_splits(folder: Path, limit: int | None) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Texts and labels of train / val (stratified 10% of the training file) / test."""
    texts, labels = _text.read_emotion_csv(folder / FILES[0], CLASSES)
    test_texts, test_labels = _text.read_emotion_csv(folder / FILES[1], CLASSES)
    y = torch.tensor(labels)
    train_idx, val_idx = _text.stratified_split(y, VAL_FRACTION, SPLIT_SEED)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise DataError(f"{folder / FILES[0]}: {len(y)} tweets are too few to hold out 10% for validation")
    splits = {
        "train": ([texts[i] for i in train_idx], y[train_idx]),
        "val": ([texts[i] for i in val_idx], y[val_idx]),
        "test": (test_texts, torch.tensor(test_labels)),
    }
    if limit is None:
        return splits
    out = {}
    for name, (t, lab) in splits.items():  # a stratified sample keeps every class in a small slice
        _, keep = _text.stratified_split(lab, min(1.0, limit / len(lab)), SPLIT_SEED)
        out[name] = ([t[i] for i in keep[:limit]], lab[keep[:limit]])
    return out


def glove_matrix(path: Path, itos: list[str], train_ids: torch.Tensor) -> dict[str, Any]:
    """GloVe rows for the vocabulary: matrix [V, D], found mask [V] and coverage."""
    matrix, found = _text.load_glove(path, itos)
    real = train_ids[train_ids > 1]  # training tokens that are in the vocabulary (not pad/unk)
    return {
        "matrix": matrix,
        "found": found,
        "coverage": found[2:].float().mean().item(),  # share of vocabulary words
        "token_coverage": found[real].float().mean().item() if len(real) else 0.0,  # of train tokens
    }


# ------------------------------------------------------------------------------------ model


class TweetRNN(nn.Module):
    """Embedding -> (bi)directional RNN / GRU / LSTM on packed sequences -> linear classifier."""

    def __init__(self, vocab_size: int, emb_dim: int, num_classes: int, cell: str = "gru",
                 hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.0, emb_dropout: float = 0.0, pooling: str = "last") -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell '{cell}'; known: {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}'; known: {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}.get(cell, nn.RNN)
        extra = {"nonlinearity": cell.removeprefix("rnn_")} if rnn_cls is nn.RNN else {}
        self.rnn = rnn_cls(emb_dim, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
                           dropout=dropout if num_layers > 1 else 0.0, **extra)
        self.directions = 2 if bidirectional else 1
        self.emb_drop, self.out_drop = nn.Dropout(emb_dropout), nn.Dropout(dropout)
        width = hidden_size * self.directions
        self.head = nn.Linear(width * 2 if pooling == "last+max" else width, num_classes)

    def features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, T], lengths [B] -> classifier input [B, H * directions (x2 for last+max)].

        With packed input the forward direction stops at each tweet's last real token and the
        backward direction ends at its first; ``h_n`` comes back in the batch's original order.
        Max pooling reads the per-step outputs with the padding steps set to -inf.
        """
        x = self.emb_drop(self.embedding(ids))  # [B, T, E]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h_n, c_n); h_n [layers * dirs, B, H]
        last = torch.cat(list(h[-self.directions:]), dim=1)  # the last layer's directions
        if self.pooling == "last":
            return last
        steps, _ = pad_packed_sequence(out, batch_first=True, padding_value=float("-inf"))  # [B, T', H * dirs]
        pooled = steps.max(dim=1).values
        return pooled if self.pooling == "max" else torch.cat([last, pooled], dim=1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.out_drop(self.features(ids, lengths)))  # [B, classes]


# ------------------------------------------------------------------------------------- task


@register
class Emotion(Task):
    name = "emotion"
    Config = EmotionConfig
    data_fields = ("min_freq", "max_len", "glove_path")
    data_sets = (EMOTIONS_DATA, GLOVE_DATA)
    smoke = {"hidden_size": 16, "batch_size": 256, "embedding_dim": 16}
    allowed_values = {"cell": CELLS, "pooling": POOLINGS, "embedding": EMBEDDINGS, "optimizer": OPTIMIZERS,
                      "lr_schedule": LR_SCHEDULES, "num_layers": (1, 2, 3)}

    @classmethod
    def load_data(cls, data_dir: Path, config: EmotionConfig, limit: int | None = None) -> dict[str, Any]:
        """Read, clean, split and encode the tweets once; read GloVe when the config asks for it
        or its file exists (so a sweep may search ``embedding: [glove, random]``)."""
        data_dir = Path(data_dir).expanduser()
        splits = read_splits(emotions_dir(data_dir), limit)
        tokens = {k: [_text.clean_tweet(t) for t in texts] for k, (texts, _) in splits.items()}
        itos = _text.build_vocab(tokens["train"], config.min_freq)
        data: dict[str, Any] = {"classes": list(CLASSES), "itos": itos, "pretrained": {}}
        for k, (_, y) in splits.items():
            ids, lengths = _text.encode(tokens[k], itos, config.max_len)
            data[k] = {"ids": ids, "lengths": lengths, "y": y}
        glove = glove_file(data_dir, config.glove_path)
        if config.embedding == "glove" or glove.exists():
            data["pretrained"]["glove"] = glove_matrix(glove, itos, data["train"]["ids"])
        return data

    def __init__(self, config: EmotionConfig, data: dict[str, Any], ctx: TrialContext) -> None:
        super().__init__(config, data, ctx)
        _check_embedding_loaded(config, data)
        net, self.pretrained = self._build_net(config, data, ctx.generator)
        self.net = net.to(ctx.device)
        self.model = ctx.wrap_model(self.net)
        self.splits = {k: {n: t.to(ctx.device) for n, t in data[k].items()} for k in ("train", "val", "test")}
        weight = _class_weights(data["train"]["y"], len(CLASSES)) if config.class_weights else None
        self.class_weight = weight.to(ctx.device) if weight is not None else None
        self.optimizer = _optimizer(config, self.net)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda epoch: lr_factor(config.lr_schedule, epoch / ctx.max_epochs))

    @staticmethod
    def _build_net(cfg: EmotionConfig, data: dict[str, Any], generator: torch.Generator):
        pre = data["pretrained"].get(cfg.embedding)
        emb_dim = pre["matrix"].shape[1] if pre else cfg.embedding_dim
        net = TweetRNN(len(data["itos"]), emb_dim, len(CLASSES), cfg.cell, cfg.hidden_size, cfg.num_layers,
                       cfg.bidirectional, cfg.dropout, cfg.emb_dropout, cfg.pooling)
        if pre is not None:
            init_pretrained(net.embedding, pre["matrix"], pre["found"], cfg.freeze_embedding, generator)
        return net, pre

    def _batch(self, split: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.splits[split]
        lengths = s["lengths"][idx]
        return s["ids"][idx, : int(lengths.max())], lengths, s["y"][idx]  # trim to the batch's longest

    def _bucketed_batches(self):
        """Shuffled batches of tweets of similar length: ``ctx.batches`` hands out pools of
        ``BUCKET_POOL`` batches (this worker's shard under data parallelism); each pool is sorted
        by length and cut into batches, whose order is shuffled. A recurrent net steps once per
        token of a batch's longest tweet, so like lengths make an epoch ~1.5x faster."""
        bs, lengths = self.config.batch_size, self.splits["train"]["lengths"]
        batches = []
        for pool in self.ctx.batches(len(lengths), bs * BUCKET_POOL):
            if self.ctx.distributed and len(pool) < bs * BUCKET_POOL:
                continue  # a short last pool would give one worker fewer steps than the others
            pool = pool[lengths[pool.to(lengths.device)].argsort(stable=True).cpu()]
            batches.extend(pool.split(bs))
        for i in torch.randperm(len(batches), generator=self.ctx.generator).tolist():
            yield batches[i]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        cfg = self.config
        totals = {"loss": 0.0, "correct": 0.0, "n": 0.0}
        for idx in self._bucketed_batches():
            ids, lengths, y = self._batch("train", idx)
            logits = self.model(ids, lengths)  # [B, classes]
            loss = F.cross_entropy(logits, y, weight=self.class_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            self.optimizer.step()
            totals["loss"] += check_finite(loss.item(), "training loss") * len(y)
            totals["correct"] += (logits.argmax(1) == y).sum().item()
            totals["n"] += len(y)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        totals = self.ctx.sum_across_workers(totals)
        return {"loss": totals["loss"] / totals["n"], "acc": totals["correct"] / totals["n"], "lr": lr}

    @torch.no_grad()
    def predict(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [N, classes] and labels [N] of a whole split, in eval mode."""
        self.net.eval()
        n = len(self.splits[split]["y"])
        logits, labels = [], []
        for idx in torch.arange(n).split(1024):
            ids, lengths, y = self._batch(split, idx.to(self.ctx.device))
            logits.append(self.net(ids, lengths))
            labels.append(y)
        return torch.cat(logits), torch.cat(labels)

    def evaluate(self, split: str) -> dict[str, float]:
        logits, y = self.predict(split)
        conf = confusion_matrix(logits.argmax(1), y, len(CLASSES))
        return {"loss": F.cross_entropy(logits, y).item(), "acc": (conf.trace() / conf.sum()).item(),
                "macro_f1": per_class(conf)["f1"].mean().item()}

    def trial_metrics(self) -> dict[str, float]:
        out = {"params": float(sum(p.numel() for p in self.net.parameters())),
               "vocab_size": float(len(self.data["itos"]))}
        out["emb_coverage"] = self.pretrained["coverage"] if self.pretrained else 0.0
        out["emb_token_coverage"] = self.pretrained["token_coverage"] if self.pretrained else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def test_report(self, out_dir: Path) -> dict[str, Any]:
        """Per-class confusion matrix (rows: true class, columns: predicted) and its figure."""
        logits, y = self.predict("test")
        conf = confusion_matrix(logits.argmax(1), y, len(CLASSES))
        stats = per_class(conf)
        figure = plot_confusion(conf, CLASSES, Path(out_dir) / "confusion_matrix.png")
        return {
            "classes": list(CLASSES),
            "confusion_matrix": conf.tolist(),
            "per_class": {c: {k: round(stats[k][i].item(), 4) for k in stats} for i, c in enumerate(CLASSES)},
            "macro_f1": round(stats["f1"].mean().item(), 4),
            "figure": figure.name,
        }

    @classmethod
    def summarize(cls, trials: Trials) -> dict[str, Any]:
        """The best trial per cell family (rnn, gru, lstm) by validation accuracy, and what each
        family was given (trials, epochs), so the comparison's fairness can be read off."""
        return {"leaderboard": leaderboard(trials)}


# ---------------------------------------------------------------------------------- helpers


def _check_embedding_loaded(cfg: EmotionConfig, data: dict[str, Any]) -> None:
    """The one rule ``Emotion.validate`` cannot check: it depends on the data that was loaded."""
    if cfg.embedding != "random" and cfg.embedding not in data["pretrained"]:
        raise TrialError(f"embedding '{cfg.embedding}' was not loaded (no GloVe file); set embedding: glove "
                         f"as a constant so the sweep reports the missing file")


def init_pretrained(emb: nn.Embedding, matrix: torch.Tensor, found: torch.Tensor, freeze: bool,
                    generator: torch.Generator) -> None:
    """Copy pretrained rows; draw the others from N(0, std of the pretrained values); zero <pad>.

    ``freeze``: a gradient mask keeps the pretrained rows fixed while the rest learn.
    """
    std = matrix[found].std().item() if found.sum() > 1 else 1.0
    weight = torch.randn(matrix.shape, generator=generator) * std
    weight[found] = matrix[found]
    weight[0] = 0.0
    with torch.no_grad():
        emb.weight.copy_(weight)
    if freeze:
        learn = (~found).float().unsqueeze(1)  # [V, 1]: 1 where the row is not pretrained
        emb.weight.register_hook(lambda g: g * learn.to(g.device))


def _optimizer(cfg: EmotionConfig, net: TweetRNN) -> torch.optim.Optimizer:
    """Weight decay on the recurrent and output weights only: decaying (frozen) word vectors
    toward zero would erase what pretraining put there."""
    emb = [net.embedding.weight]
    rest = [p for n, p in net.named_parameters() if not n.startswith("embedding.")]
    groups = [{"params": emb, "weight_decay": 0.0}, {"params": rest, "weight_decay": cfg.weight_decay}]
    return make_optimizer(cfg.optimizer, groups, cfg.lr)


def _class_weights(y: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.bincount(y, minlength=n).float().clamp_min(1)
    return counts.sum() / (n * counts)  # 1.0 for every class when balanced


def per_class(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    tp = conf.diag().float()
    precision = tp / conf.sum(0).clamp_min(1)
    recall = tp / conf.sum(1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return {"precision": precision, "recall": recall, "f1": f1}


def plot_confusion(conf: torch.Tensor, classes, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    rates = conf.float() / conf.sum(1, keepdim=True).clamp_min(1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{conf[i, j].item()}\n{rates[i, j].item():.0%}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {conf.trace().item() / conf.sum().item():.1%}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


FAMILIES = {"rnn_tanh": "rnn", "rnn_relu": "rnn", "gru": "gru", "lstm": "lstm"}
LEADER_KEYS = ("cell", "bidirectional", "num_layers", "hidden_size", "embedding", "freeze_embedding", "lr",
               "batch_size", "optimizer")


def leaderboard(trials: Trials) -> list[dict[str, Any]]:
    """One row per cell family, best validation accuracy first, with what the family was given
    (trials, epochs, seconds) beside what it reached."""
    families: dict[str, list[TrialSummary]] = {}
    for t in trials:
        cell = t.config.get("cell")
        if cell is not None:
            families.setdefault(FAMILIES.get(cell, cell), []).append(t)
    rows = [family_row(family, group, trials.metric) for family, group in sorted(families.items())]
    return sorted(rows, key=lambda r: -r.get("best_val_acc", -1.0))


def family_row(family: str, group: list[TrialSummary], metric: str) -> dict[str, Any]:
    """The best trial of one family by validation accuracy (its best epoch's, when the sweep ranks
    by it; else the last epoch's), and the family's trials, epochs and seconds."""
    def score(t: TrialSummary) -> float | None:
        return t.best if metric == "val_acc" else t.metrics.get("val_acc")

    row: dict[str, Any] = {"family": family, "trials": len(group), "epochs": int(sum(t.epochs or 0 for t in group)),
                           "train_s": round(float(sum(t.wall_s or 0 for t in group)), 1)}
    ranked = [t for t in group if score(t) is not None]
    if ranked:
        best = max(ranked, key=score)
        row["best_val_acc"] = round(float(score(best)), 4)
        row["trial_id"] = str(best.trial_id) if best.trial_id is not None else None
        row["config"] = {k: best.config[k] for k in LEADER_KEYS if k in best.config}
    return row
