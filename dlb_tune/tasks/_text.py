"""Text plumbing for the ``emotion`` task: the tweet CSV reader, a tweet cleaner, the vocabulary,
stratified splits and the GloVe reader.

The cleaner follows the preprocessing GloVe's Twitter vectors were trained with (Stanford's
``preprocess-twitter.rb``): mentions, URLs, numbers, hashtags, emoticons, repeated punctuation,
elongated and all-caps words become the tokens ``<user> <url> <number> <hashtag> <smile> <lolface>
<sadface> <neutralface> <heart> <repeat> <elong> <allcaps>`` that the full Twitter vocabulary
holds. Contractions are expanded ("don't" -> "do not"), because the 12k-word subset tests use (and
most GloVe files) hold plain words, not "n't" or "'m".
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch

from dlb_tune.tasks.base import DataError, fetch_hint

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in every vocabulary

# --- cleaning --------------------------------------------------------------------------------

_EYES, _NOSE = r"[8:=;]", r"['`\-]?"
_SUBS = [  # (pattern, replacement), applied in order to the html-unescaped text
    (re.compile(r"<(?!3)|>"), " "),  # only our special tokens may use angle brackets
    (re.compile(r"<3+"), " <heart> "),
    (re.compile(r"https?://\S+|www\.\S+", re.I), " <url> "),
    (re.compile(r"@\w+"), " <user> "),
    (re.compile(rf"{_EYES}{_NOSE}[)\]d]+(?![a-z0-9])|[(\[]+{_NOSE}{_EYES}", re.I), " <smile> "),
    (re.compile(rf"{_EYES}{_NOSE}p+(?![a-z0-9])", re.I), " <lolface> "),
    (re.compile(rf"{_EYES}{_NOSE}[(\[]+|[)\]]+{_NOSE}{_EYES}"), " <sadface> "),
    (re.compile(rf"{_EYES}{_NOSE}[/|l*](?![a-z0-9/])", re.I), " <neutralface> "),
    (re.compile(r"(?<![a-z0-9])[-+]?[.\d]*\d[:,.\d]*(?:am|pm|st|nd|rd|th|s|k)?(?![a-z0-9])", re.I), " <number> "),
    (re.compile(r"([!?.])[!?.]+"), r" \1 <repeat> "),  # "!!!" -> "! <repeat>", "..." -> ". <repeat>"
]
_HASHTAG = re.compile(r"#(\w+)")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_ALLCAPS = re.compile(r"(?<![<\w'])([A-Z][A-Z']*[A-Z])(?![\w'])")  # 2+ capitals, not inside a word
_LAUGH = re.compile(r"\b(?:a?(?:ha){2,}h?|(?:he){2,}|(?:lo)+l|(?:lo)+l[sz])\b")
_ELONG = re.compile(r"([a-z])\1{2,}")
_TOKEN = re.compile(r"<[a-z]+>|[a-z0-9]+(?:'[a-z]+)?|[!?.]")

_IRREGULAR = {"can't": "can not", "won't": "will not", "shan't": "shall not", "ain't": "is not",
              "let's": "let us", "y'all": "you all"}
_SUFFIXES = {"n't": " not", "'m": " am", "'re": " are", "'ve": " have", "'ll": " will", "'d": " would"}
_IS_WORDS = {"it", "that", "what", "he", "she", "there", "here", "where", "who", "how", "this", "everything",
             "nothing", "something", "someone", "everyone", "today", "life", "mom", "name", "weather"}


def _hashtag(m: re.Match) -> str:
    """#HappyMothersDay -> "<hashtag> happy mothers day"; lower-case tags stay one word."""
    body = m.group(1)
    words = _CAMEL.findall(body) if body != body.lower() and body != body.upper() else [body]
    return " <hashtag> " + " ".join(words) + " "


def _allcaps(m: re.Match) -> str:
    """"GREAT" -> "GREAT <allcaps>" (lower-cased later); "I'" and other single letters stay."""
    word = m.group(1)
    return f" {word} <allcaps> " if len(word.replace("'", "")) > 1 else word


def _expand(token: str) -> str:
    """Expand a contraction: "don't" -> "do not"; "john's" -> "john" (possessive dropped)."""
    if "'" not in token:
        return token
    if token in _IRREGULAR:
        return _IRREGULAR[token]
    for suffix, full in _SUFFIXES.items():
        if token.endswith(suffix):
            return token[: -len(suffix)] + full
    if token.endswith("'s"):
        stem = token[:-2]
        return f"{stem} is" if stem in _IS_WORDS else stem
    return token.replace("'", "")


def clean_tweet(text: str) -> list[str]:
    """A raw tweet -> lower-case tokens in GloVe-Twitter style (see the module docstring)."""
    text = html.unescape(text).replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    text = _HASHTAG.sub(_hashtag, text)
    text = _ALLCAPS.sub(_allcaps, text)
    text = _LAUGH.sub(lambda m: "lol" if m.group(0).startswith("l") else "haha", text.lower())
    tokens = []
    for tok in _TOKEN.findall(text):
        elong = tok[0] != "<" and _ELONG.search(tok)
        tokens.extend(_expand(_ELONG.sub(r"\1\1", tok) if elong else tok).split())
        if elong:
            tokens.append("<elong>")
    return tokens


# --- the CSV ----------------------------------------------------------------------------------


def read_emotion_csv(path: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    """Texts and class ids from a CSV with ``emotion`` and ``content`` columns.

    Missing columns, an unknown label or bytes that are not UTF-8 raise ``DataError`` naming the
    file and line: the file is not what we think it is. Rows whose content is empty are skipped
    and counted on stdout: a tweet with no text carries no signal.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing {path}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    if "emotion" not in header or "content" not in header:
        raise DataError(f"{path}: header {header} lacks the columns 'emotion' and 'content'")
    i_label, i_text = header.index("emotion"), header.index("content")
    index = {c: i for i, c in enumerate(classes)}
    texts, labels, empty = [], [], 0
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) <= max(i_label, i_text):
            raise DataError(f"{path}:{reader.line_num}: expected {len(header)} fields, got {len(row)}")
        label, content = row[i_label].strip(), row[i_text].strip()
        if label not in index:
            raise DataError(f"{path}:{reader.line_num}: unknown emotion {label!r}; "
                            f"expected one of {', '.join(classes)}")
        if not content:
            empty += 1
            continue
        texts.append(content)
        labels.append(index[label])
    if empty:
        print(f"{path}: skipped {empty} row(s) with empty content")
    if not texts:
        raise DataError(f"{path}: no rows with text")
    return texts, labels


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (rest, part) with ``part`` holding ``fraction`` of every class, chosen with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    rest, part = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(fraction * len(idx)))
        part.append(idx[:k])
        rest.append(idx[k:])
    return torch.cat(rest).sort().values, torch.cat(part).sort().values


# --- vocabulary and encoding -------------------------------------------------------------------


def build_vocab(token_lists: Iterable[list[str]], min_freq: int) -> list[str]:
    """Words seen at least ``min_freq`` times, most frequent first, after ``<pad>`` and ``<unk>``."""
    counts = Counter(t for tokens in token_lists for t in tokens)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return [PAD, UNK] + [w for w in words if w not in (PAD, UNK)]


def encode(token_lists: list[list[str]], itos: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ids [N, L] (right-padded with 0, L = longest kept) and lengths [N] (>= 1)."""
    stoi = {w: i for i, w in enumerate(itos)}
    unk = stoi[UNK]
    rows = [[stoi.get(t, unk) for t in tokens[:max_len]] or [unk] for tokens in token_lists]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return ids, lengths


# --- pretrained embeddings ----------------------------------------------------------------------


def _fallbacks(word: str) -> list[str]:
    """Forms to try for a word missing from a pretrained vocabulary."""
    forms = [word]
    if word.startswith("<") and word.endswith(">"):
        return forms
    single = re.sub(r"([a-z])\1+", r"\1", word)  # "soo" -> "so", "loove" -> "love"
    if single != word:
        forms.append(single)
    return forms


def load_glove(path: Path, itos: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a GloVe text file (``word v1 ... vD``, optionally gzip) for the words in ``itos``.

    Returns the matrix [V, D] (zeros where missing) and a bool mask [V] of the rows found. The
    dimension is read from the first line; a line with another count of values, or a value that
    is not a number in a row we use, raises ``DataError`` with its line number. A word2vec-style
    header line "<count> <dim>" is skipped.
    """
    wanted = {form for w in itos[2:] for form in _fallbacks(w)}
    opener = gzip.open if path.suffix == ".gz" else open
    rows: dict[str, tuple[int, str]] = {}  # word -> (line number, raw values)
    dim = None
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as f:
            for n, line in enumerate(f, 1):
                word, _, values = line.rstrip("\n\r ").partition(" ")
                count = values.count(" ") + 1 if values else 0
                if n == 1 and count == 1 and word.isdigit() and values.isdigit():
                    continue  # word2vec header
                if dim is None:
                    dim = count
                if count != dim or dim == 0:
                    raise DataError(f"{path}:{n}: expected a word and {dim} numbers, got {count} values")
                if word in wanted and word not in rows:
                    rows[word] = (n, values)
    except FileNotFoundError:
        raise DataError(f"GloVe file not found: {path} (glove_path; "
                        f"the originals are at nlp.stanford.edu/projects/glove); {fetch_hint('emotion')}") from None
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as e:
        raise DataError(f"cannot read GloVe file {path}: {e}") from None
    if dim is None:
        raise DataError(f"GloVe file {path} is empty")
    matrix = torch.zeros(len(itos), dim)
    found = torch.zeros(len(itos), dtype=torch.bool)
    for i, w in enumerate(itos[2:], 2):
        form = next((f for f in _fallbacks(w) if f in rows), None)  # the exact form first
        if form is not None:
            matrix[i], found[i] = _parse_row(path, rows[form]), True
    return matrix, found


def _parse_row(path: Path, row: tuple[int, str]) -> torch.Tensor:
    n, values = row
    try:
        return torch.tensor([float(v) for v in values.split(" ")])
    except ValueError:
        raise DataError(f"{path}:{n}: a value is not a number") from None
