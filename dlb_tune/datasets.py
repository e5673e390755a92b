"""The data sets the tasks read: where each comes from, how it is fetched, and where it goes.

``dlb-tune data fetch TASK|all`` downloads each file from its publisher (or from ``--mirror URL``,
which replaces every publisher's base address by ``URL/<data set>/<file>``), checks it against a
pinned SHA-256, and installs into the data folder only what the loaders read, in their layout.

Downloads go to ``<dest>/.downloads/<data set>/<file>.part``, resume from there with an HTTP Range
request, and are renamed only once complete and verified. Installing unpacks into a staging folder
beside the data and moves it into place at the end, so a failure never leaves half a data set.

Checksums: the catalog pins the SHA-256 the publisher (or a well-known consumer of its files,
such as tensorflow-datasets) published. Where none is published the catalog says so, and the
fetch prints the hash it got. ``--checksums FILE`` (``sha256sum`` format, names as
``<data set>/<file>``) replaces the pinned hashes of the files it lists: for a mirror that
repackages the data (a trimmed copy, the tests' archives). The trust comes from a file the user
chose, never from the server that sends the bytes, so a mirror cannot vouch for itself.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dlb_tune.tasks.base import DataError

DATA_ENV = "DLB_TUNE_DATA"
DOWNLOADS = ".downloads"  # under the data folder: partial and verified downloads
TIMEOUT_S = 10  # per connect and per read: an unreachable mirror fails in seconds, not minutes
CHUNK = 1 << 20
GLOVE_DIMS = (25, 50, 100, 200)


@dataclass(frozen=True)
class Remote:
    """One file as its publisher serves it."""

    name: str  # file name; also its path under a mirror: <mirror>/<data set>/<name>
    url: str  # the publisher's address
    sha256: str | None  # None: no published hash (the data set's ``note`` says why)
    size: int | None = None  # bytes, where published; shown before downloading


@dataclass(frozen=True)
class DataSet:
    name: str
    files: tuple[Remote, ...]
    expected: tuple[str, ...]  # glob patterns under the data folder that must all match: "present";
    #                            {dim} is the GloVe size asked for (any, in `data list`)
    install: Callable[[dict[str, Path], Path, int], None]  # (downloaded files, staging folder, glove dim)
    source: str
    license: str
    note: str = ""  # why a file has no pinned SHA-256

    def status(self, root: Path, glove_dim: int | None = None) -> str:
        dim = "*" if glove_dim is None else str(glove_dim)
        found = [bool(next(root.glob(p.format(dim=dim)), None)) for p in self.expected]
        if all(found):
            return "present"
        partial = any(found) or any((root / DOWNLOADS / self.name).glob("*"))
        return "partial" if partial else "missing"

    def size(self, root: Path) -> int:
        tops = {p.split("/")[0] for p in self.expected}
        return sum(f.stat().st_size for t in tops for f in (root / t).rglob("*") if f.is_file())


# --- installing: what each loader reads, from what each publisher serves -------------------------


def _gunzip_mnist(files: dict[str, Path], stage: Path, _dim: int) -> None:
    raw = stage / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, path in files.items():
        with gzip.open(path) as src, open(raw / name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)


def _extract(archive: Path, dest: Path, keep: Callable[[str], str | None]) -> int:
    """Members of a zip for which ``keep(name)`` gives a relative path, written there; the count."""
    n = 0
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                rel = None if info.is_dir() else keep(info.filename)
                if rel:
                    out = dest / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                    n += 1
    except (zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{archive.name} is not a readable zip archive: {e}") from None
    if not n:
        raise DataError(f"{archive.name} holds none of the files the loaders read")
    return n


def _grocery_member(name: str) -> str | None:
    """``<repo>-<ref>/dataset/...`` minus the iconic images (the loader reads only the splits)."""
    parts = name.split("/")[1:]  # the archive's top folder is named after the ref: drop it
    if len(parts) < 2 or parts[0] != "dataset" or parts[1].startswith("iconic"):
        return None
    return "/".join(["grocery", "GroceryStoreDataset", *parts])


def _install_grocery(files: dict[str, Path], stage: Path, _dim: int) -> None:
    (archive,) = files.values()
    _extract(archive, stage, _grocery_member)


def _copy_into(folder: str) -> Callable[[dict[str, Path], Path, int], None]:
    def install(files: dict[str, Path], stage: Path, _dim: int) -> None:
        (stage / folder).mkdir(parents=True)
        for name, path in files.items():
            if name.endswith(".zip"):
                _extract(path, stage / folder, lambda m: m if m.startswith("img_align_celeba/") else None)
            else:
                shutil.copyfile(path, stage / folder / name)
    return install


def _install_glove(files: dict[str, Path], stage: Path, dim: int) -> None:
    (archive,) = files.values()
    wanted = f"glove.twitter.27B.{dim}d.txt"
    _extract(archive, stage / "glove", lambda m: wanted if m.split("/")[-1] == wanted else None)


# --- the catalog ----------------------------------------------------------------------------------

_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror
_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="  # torchvision's CelebA ids
_EMOTIONS = ("https://raw.githubusercontent.com/uriMen/text-classification-with-pytorch/"
             "e3f69aeed6323145ed12a0dcef9f2c820afcfc38/data/")

CATALOG: dict[str, DataSet] = {d.name: d for d in (
    DataSet(
        "mnist",
        files=tuple(  # SHA-256 as pinned by users of the cvdf/ossci mirrors (LeCun's original bytes)
            Remote(name, _MNIST + name, sha, size) for name, sha, size in (
                ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
                ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
                ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
                ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
            )
        ),
        expected=("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte",
                  "MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"),
        install=_gunzip_mnist,
        source="LeCun, Cortes, Burges: yann.lecun.com/exdb/mnist (torchvision's mirror)",
        license="CC BY-SA 3.0",
    ),
    DataSet(
        "grocery",
        files=(Remote("GroceryStoreDataset-master.zip",
                      "https://github.com/marcusklasson/GroceryStoreDataset/archive/refs/heads/master.zip", None),),
        expected=tuple(f"grocery/GroceryStoreDataset/dataset/{f}"
                       for f in ("train.txt", "val.txt", "test.txt", "classes.csv")),
        install=_install_grocery,
        source="Klasson et al., WACV 2019: github.com/marcusklasson/GroceryStoreDataset",
        license="MIT",
        note="GitHub builds branch archives on request; they are not byte-stable",
    ),
    DataSet(
        "emotions",
        files=(Remote("trainEmotions.csv", _EMOTIONS + "trainEmotions.csv", None),
               Remote("testEmotions.csv", _EMOTIONS + "testEmotions.csv", None)),
        expected=("emotions/trainEmotions.csv", "emotions/testEmotions.csv"),
        install=_copy_into("emotions"),
        source="tweet-emotion course data: github.com/uriMen/text-classification-with-pytorch (pinned commit)",
        license="unstated (the repository publishes none)",
        note="the repository publishes none; the URL pins a commit",
    ),
    DataSet(
        "glove",
        files=(Remote("glove.twitter.27B.zip", "https://nlp.stanford.edu/data/glove.twitter.27B.zip", None),),
        expected=("glove/glove.twitter.27B.{dim}d*.txt",),  # the subset too: *.25d.subset12k.txt
        install=_install_glove,
        source="Pennington et al. 2014: nlp.stanford.edu/projects/glove (Twitter, 27B tokens)",
        license="PDDL 1.0",
        note="Stanford publishes none",
    ),
    DataSet(
        "celeba",
        files=(  # ids as in torchvision; SHA-256 and sizes from tensorflow-datasets' celeb_a checksums.tsv
            Remote("img_align_celeba.zip", _DRIVE + "0B7EVK8r0v71pZjFTYXZWM3FlRnM",
                   "46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74", 1443490838),
            Remote("list_eval_partition.txt", _DRIVE + "0B7EVK8r0v71pY0NSMzRuSXJEVkk",
                   "fc955bcb3ef8fbdf7d5640d9a8693a8431b5f2ee291a5c1449a1549e7e073fe7", 2836386),
            Remote("identity_CelebA.txt", _DRIVE + "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS",
                   "c6143857c3e2630ac2da9f782e9c1232e5e59be993a9d44e8a7916c78a6158c0", 3424458),
            Remote("list_attr_celeba.txt", _DRIVE + "0B7EVK8r0v71pblRyaVFSWGxPY0U",
                   "f0e5da289d5ccf75ffe8811132694922b60f2af59256ed362afa03fefba324d0", 26721026),
        ),
        expected=("celeba/list_eval_partition.txt", "celeba/img_align_celeba/*.jpg"),
        install=_copy_into("celeba"),
        source="Liu et al., ICCV 2015: mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive)",
        license="non-commercial research use only",
    ),
)}


# --- where the data lives -------------------------------------------------------------------------


def default_data_dir(echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Path:
    """``$XDG_CACHE_HOME/dlb-tune/data`` (``~/.cache/...``): created, and named once, on first use."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    path = cache / "dlb-tune" / "data"
    if not path.is_dir():
        path.mkdir(parents=True)
        echo(f"data folder: {path} (first use; --data-dir or ${DATA_ENV} picks another)")
    return path


def resolve_data_dir(given: str | None) -> Path:
    """``given``, else ``$DLB_TUNE_DATA``, else the per-user default folder."""
    chosen = given or os.environ.get(DATA_ENV)
    if not chosen:
        return default_data_dir()
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"data folder does not exist: {path}")
    return path


def data_sets_for(target: str) -> list[DataSet]:
    """``all``, a data set's name, or a task's name (its ``data_sets``)."""
    if target == "all":
        return list(CATALOG.values())
    if target in CATALOG:
        return [CATALOG[target]]
    from dlb_tune.tasks import get_task, UnknownTask

    try:
        names = get_task(target).data_sets
    except UnknownTask:
        raise DataError(f"unknown task or data set '{target}'; known: all, "
                        f"{', '.join(CATALOG)}, or a task name (`dlb-tune tasks`)") from None
    if not names:
        raise DataError(f"task '{target}' names no data set to fetch")
    return [CATALOG[n] for n in names]


# --- fetching ------------------------------------------------------------------------------------


@dataclass
class Fetch:
    """One ``data fetch`` run: where to, from where, and how to check."""

    dest: Path
    mirror: str | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # "<data set>/<file>" -> SHA-256
    glove_dim: int = 100
    echo: Callable[[str], None] = print
    tty: bool = False
    bytes_downloaded: int = 0

    def url(self, ds: DataSet, f: Remote) -> str:
        return f"{self.mirror.rstrip('/')}/{ds.name}/{f.name}" if self.mirror else f.url

    def run(self, sets: Iterable[DataSet]) -> None:
        for ds in sets:
            if ds.status(self.dest, self.glove_dim) == "present":
                self.echo(f"{ds.name}: present in {self.dest}")
                continue
            self.install(ds, {f.name: self.download(ds, f) for f in ds.files})

    def download(self, ds: DataSet, f: Remote) -> Path:
        folder = self.dest / DOWNLOADS / ds.name
        final, part = folder / f.name, folder / f"{f.name}.part"
        if final.is_file():
            return final  # verified by an earlier run
        folder.mkdir(parents=True, exist_ok=True)
        url = self.url(ds, f)
        self._transfer(url, part, f.size)
        self._verify(ds, f, part)
        os.replace(part, final)
        return final

    def _transfer(self, url: str, part: Path, size: int | None) -> None:
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not have:
                raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
            part.unlink()  # the range lies past the end: the partial file is not this one
            return self._transfer(url, part, size)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DataError(f"cannot reach {url}: {reason}") from None
        with response:
            if response.status != 206:
                have = 0  # the server ignored the range: start over
            kind = response.headers.get("Content-Type", "")
            if kind.startswith("text/html") and not url.endswith(".html"):
                raise DataError(f"{url} sent a web page instead of the file (a quota or sign-in page?); "
                                f"try again later or use --mirror")
            length = response.headers.get("Content-Length")
            total = have + int(length) if length else size
            self._copy(response, part, have, total, url)

    def _copy(self, response, part: Path, have: int, total: int | None, url: str) -> None:
        bar = Progress(part.name.removesuffix(".part"), total, have, self.echo, self.tty)
        with open(part, "ab" if have else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, ValueError) as e:  # reset, timeout, short read
                    raise self._interrupted(url, part, total, e) from None
                if not chunk:
                    break
                out.write(chunk)
                self.bytes_downloaded += len(chunk)
                bar.update(len(chunk))
        bar.done()
        if total is not None and part.stat().st_size < total:
            raise self._interrupted(url, part, total, "connection closed early")

    @staticmethod
    def _interrupted(url: str, part: Path, total: int | None, why: object) -> DataError:
        got = part.stat().st_size
        return DataError(f"download of {url} interrupted at {_mb(got)} of {_mb(total)} ({why}); "
                         f"run the same command again to resume")

    def _verify(self, ds: DataSet, f: Remote, part: Path) -> None:
        key = f"{ds.name}/{f.name}"
        want = self.checksums.get(key, f.sha256)
        got = sha256_of(part)
        if want is None:
            self.echo(f"warning: {key} has no published SHA-256 ({ds.note}); got {got}")
        elif got != want:
            part.unlink()  # a corrupt file must not be resumed
            raise DataError(f"{key} failed its checksum: SHA-256 {got}, expected {want}; "
                            f"deleted it, nothing installed")

    def install(self, ds: DataSet, files: dict[str, Path]) -> None:
        stage = self.dest / DOWNLOADS / f"{ds.name}.staging"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        try:
            ds.install(files, stage, self.glove_dim)
            _merge(stage, self.dest)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(self.dest / DOWNLOADS / ds.name, ignore_errors=True)
        if not any((self.dest / DOWNLOADS).iterdir()):
            (self.dest / DOWNLOADS).rmdir()
        self.echo(f"{ds.name}: installed in {self.dest} ({_mb(ds.size(self.dest))})")


def _merge(src: Path, dest: Path) -> None:
    """Move ``src``'s tree into ``dest``: a folder ``dest`` lacks moves in one rename."""
    for entry in src.iterdir():
        target = dest / entry.name
        if entry.is_dir() and target.is_dir():
            _merge(entry, target)
        else:
            os.replace(entry, target)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_checksums(path: Path) -> dict[str, str]:
    """A ``sha256sum``-style file: ``<hex>  <data set>/<file>`` per line."""
    sums = {}
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read checksums file {path}: {e}") from None
    for i, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError(f"{path}:{i}: expected '<sha256>  <data set>/<file>', got {line!r}")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


# --- progress ------------------------------------------------------------------------------------


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


class Progress:
    """A bar redrawn in place on a terminal; elsewhere (logs, CI) a plain line per quarter."""

    def __init__(self, name: str, total: int | None, start: int, echo, tty: bool) -> None:
        self.name, self.total, self.done_bytes, self.echo, self.tty = name, total, start, echo, tty
        self.t0, self.new, self.quarter, self.drawn = time.monotonic(), 0, -1, 0.0
        if start:
            echo(f"{name}: resuming at {_mb(start)}")

    def update(self, n: int) -> None:
        self.done_bytes += n
        self.new += n
        now = time.monotonic()
        if self.tty and now - self.drawn > 0.2:
            self.drawn = now
            sys.stderr.write(f"\r{self.line()}\033[K")
            sys.stderr.flush()
        elif not self.tty and self.total:
            q = 4 * self.done_bytes // self.total
            if q > self.quarter and q < 4:
                self.quarter = q
                self.echo(self.line())

    def line(self) -> str:
        speed = self.new / max(time.monotonic() - self.t0, 1e-6)
        pct = f"{100 * self.done_bytes / self.total:3.0f}% " if self.total else ""
        width = 24
        bar = ""
        if self.total and self.tty:
            filled = width * self.done_bytes // self.total
            bar = "[" + "#" * filled + "." * (width - filled) + "] "
        return f"{self.name}: {bar}{pct}{_mb(self.done_bytes)} of {_mb(self.total)} at {speed / 1e6:.1f} MB/s"

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        self.echo(self.line())


# --- listing -------------------------------------------------------------------------------------


def list_lines(root: Path) -> list[str]:
    rows = [("data set", "status", "size", "tasks", "source", "license")]
    users = _users()
    for ds in CATALOG.values():
        status = ds.status(root)
        size = _mb(ds.size(root)) if status != "missing" else "-"
        rows.append((ds.name, status, size, ",".join(users.get(ds.name, [])) or "-", ds.source, ds.license))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return [f"data folder: {root}"] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5] for r in rows]


def _users() -> dict[str, list[str]]:
    from dlb_tune.tasks import all_tasks

    users: dict[str, list[str]] = {}
    for name, task in all_tasks().items():
        for ds in task.data_sets:
            users.setdefault(ds, []).append(name)
    return users
