"""The data sets the tasks read: where each comes from, how it is fetched, and where it goes.

``dlb-tune data fetch TASK|all`` downloads each file from its publisher (or from ``--mirror URL``,
which replaces every publisher's base address by ``URL/<data set>/<file>``), checks it against a
pinned SHA-256, and installs into the data folder only what the loaders read, in their layout.

Downloads go to ``<dest>/.downloads/<data set>/<file>.part``, resume from there with an HTTP Range
request, and are renamed only once complete and verified. Installing unpacks into a staging folder
beside the data and moves it into place at the end, so a failure never leaves half a data set.

Checksums: the catalog pins the SHA-256 the publisher (or well-known consumers of its files, such
as tensorflow-datasets) published, for every file. GitHub builds the Grocery Store archive on
request (its bytes are not stable), so its URL pins a commit and its unpacked files are checked
against a per-file manifest (``dlb_tune/checksums/``, whose SOURCES.md says where each hash comes
from). ``--checksums FILE`` (``sha256sum`` format, names as ``<data set>/<file>``) replaces the
pinned hashes of the files it lists: for a mirror that repackages the data (a trimmed copy, the
tests' archives). The trust comes from a file the user chose, never from the server that sends
the bytes, so a mirror cannot vouch for itself. ``data list --verify`` checks installed files.

What a server sends is untrusted until checked: a download stops past its catalog size (times a
margin) or the free space; an archive member with an absolute path, '..', a link or a device
refuses the whole archive; unpacking stops past ``UNPACK_RATIO`` times the download's size; a
download that fails its check, or whose install fails, is deleted, never reused.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import stat
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dlb_tune import places
from dlb_tune.tasks.base import DataError

DOWNLOADS = ".downloads"  # under the data folder: partial and verified downloads
TIMEOUT_S = 10  # per connect and per read: an unreachable mirror fails in seconds, not minutes
CHUNK = 1 << 20
GLOVE_DIMS = (25, 50, 100, 200)
DOWNLOAD_MARGIN = 1.5  # a file may exceed its catalog size this much (a mirror's repackaging), no more
UNPACK_RATIO = 10  # unpacked bytes per downloaded byte at most: text deflates ~3x (GloVe), a zip bomb 1000x
CHECKSUMS = Path(__file__).with_name("checksums")  # per-file SHA-256 of unpacked data sets; SOURCES.md there


@dataclass(frozen=True)
class Remote:
    """One file as its publisher serves it."""

    name: str  # file name; also its path under a mirror: <mirror>/<data set>/<name>
    url: str  # the publisher's address
    sha256: str | None  # None: no stable bytes to pin (the data set's ``manifest`` checks what it unpacks to)
    size: int | None = None  # bytes, where published; shown before downloading, and the download's cap
    installed: str | None = None  # its path under the data folder when installed byte for byte


@dataclass(frozen=True)
class DataSet:
    name: str
    files: tuple[Remote, ...]
    expected: tuple[str, ...]  # glob patterns under the data folder that must all match: "present";
    #                            {dim} is the GloVe size asked for (any, in `data list`)
    install: Callable[[dict[str, Path], Staging], None]  # (downloaded files, where to unpack them)
    source: str
    license: str
    note: str = ""  # why a file has no pinned SHA-256
    manifest: str | None = None  # a file of CHECKSUMS: "<sha256>  <path under manifest_root>" per installed file
    manifest_root: str = ""  # the folder under the data folder that the manifest's paths start from

    def status(self, root: Path, glove_dim: int | None = None) -> str:
        dim = "*" if glove_dim is None else str(glove_dim)
        found = [bool(next(root.glob(p.format(dim=dim)), None)) for p in self.expected]
        if all(found):
            return "present"
        partial = any(found) or any((root / DOWNLOADS / self.name).glob("*"))
        return "partial" if partial else "missing"

    def size(self, root: Path) -> int:
        return sum(f.stat().st_size for f in self.installed_files(root))

    def installed_files(self, root: Path) -> list[Path]:
        tops = sorted({p.split("/")[0] for p in self.expected})
        return [f for t in tops for f in sorted((root / t).rglob("*")) if f.is_file()]

    def pinned(self) -> dict[str, str]:
        """The SHA-256 of installed files, by their path under the data folder."""
        pins = {f.installed: f.sha256 for f in self.files if f.installed and f.sha256}
        if self.manifest:
            pins.update({f"{self.manifest_root}/{name}": sha for name, sha in read_checksums(CHECKSUMS / self.manifest).items()})
        return pins


@dataclass
class Staging:
    """Where a data set is unpacked before it moves into place, and how much it may write there."""

    folder: Path
    glove_dim: int
    cap: ByteCap


class ByteCap:
    """What one download or one unpacking may write: its own limit, and never more than the disk
    has free. ``take`` counts bytes as they are written (an archive's headers may lie)."""

    def __init__(self, folder: Path, limit: float | None, why: str, what: str, used: int = 0):
        free = used + shutil.disk_usage(folder).free  # what is written already is on the disk
        self.limit, self.why = (int(limit), why) if limit is not None and limit <= free else (free, "the free disk space")
        self.what, self.used = what, used

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise self.exceeded()

    def exceeded(self) -> DataError:
        return DataError(f"{self.what}: more than {_mb(self.limit)} ({self.why}); stopped, nothing installed")


# --- installing: what each loader reads, from what each publisher serves -------------------------


def _gunzip_mnist(files: dict[str, Path], stage: Staging) -> None:
    raw = stage.folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, path in files.items():
        try:
            with gzip.open(path) as src, open(raw / name.removesuffix(".gz"), "wb") as dst:
                _copy_capped(src, dst, stage.cap)
        except (gzip.BadGzipFile, EOFError) as e:
            raise DataError(f"{name} is not a readable gzip file: {e}") from None


def _copy_capped(src, dst, cap: ByteCap) -> None:
    while chunk := src.read(CHUNK):
        cap.take(len(chunk))
        dst.write(chunk)


def _extract(archive: Path, stage: Staging, into: str, keep: Callable[[str], str | None]) -> int:
    """Members of a zip for which ``keep(name)`` gives a relative path, written there under
    ``stage.folder / into``; the count. Every member is checked before anything is written."""
    dest = stage.folder / into
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            for info in members:
                _check_member(archive, info)
            wanted = [(info, rel) for info in members if not info.is_dir() and (rel := keep(info.filename))]
            if stage.cap.used + sum(info.file_size for info, _ in wanted) > stage.cap.limit:  # as declared
                raise stage.cap.exceeded()
            for info, rel in wanted:
                out = dest / rel
                if not out.resolve().is_relative_to(stage.folder.resolve()):
                    raise DataError(f"{archive.name}: member {info.filename!r} would land outside the data folder; "
                                    f"refused, nothing installed")
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    _copy_capped(src, dst, stage.cap)
    except (zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{archive.name} is not a readable zip archive: {e}") from None
    if not wanted:
        raise DataError(f"{archive.name} holds none of the files the loaders read")
    return len(wanted)


def _check_member(archive: Path, info: zipfile.ZipInfo) -> None:
    """Only plain files and folders, at relative paths that stay inside (tarfile's "data" filter,
    for zip): a server chose these names."""
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in re.split(r"[/\\]", name):
        raise DataError(f"{archive.name}: member {name!r} points outside the folder it unpacks into; "
                        f"refused, nothing installed")
    kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0  # 3: Unix, which keeps modes
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        what = "a symbolic link" if kind == stat.S_IFLNK else "a device or other special file"
        raise DataError(f"{archive.name}: member {name!r} is {what}, not a plain file; refused, nothing installed")


def _grocery_member(name: str) -> str | None:
    """``<repo>-<ref>/dataset/...`` minus the iconic images (the loader reads only the splits)."""
    parts = name.split("/")[1:]  # the archive's top folder is named after the ref: drop it
    if len(parts) < 2 or parts[0] != "dataset" or parts[1].startswith("iconic"):
        return None
    return "/".join(["grocery", "GroceryStoreDataset", *parts])


def _install_grocery(files: dict[str, Path], stage: Staging) -> None:
    (archive,) = files.values()
    _extract(archive, stage, "", _grocery_member)


def _copy_into(folder: str) -> Callable[[dict[str, Path], Staging], None]:
    def install(files: dict[str, Path], stage: Staging) -> None:
        (stage.folder / folder).mkdir(parents=True)
        for name, path in files.items():
            if name.endswith(".zip"):
                _extract(path, stage, folder, lambda m: m if m.startswith("img_align_celeba/") else None)
            else:
                with open(path, "rb") as src, open(stage.folder / folder / name, "wb") as dst:
                    _copy_capped(src, dst, stage.cap)
    return install


def _install_glove(files: dict[str, Path], stage: Staging) -> None:
    (archive,) = files.values()
    wanted = f"glove.twitter.27B.{stage.glove_dim}d.txt"
    _extract(archive, stage, "glove", lambda m: wanted if m.split("/")[-1] == wanted else None)


# --- the catalog ----------------------------------------------------------------------------------

_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror
_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="  # torchvision's CelebA ids
_EMOTIONS = ("https://raw.githubusercontent.com/uriMen/text-classification-with-pytorch/"
             "e3f69aeed6323145ed12a0dcef9f2c820afcfc38/data/")
_GROCERY_COMMIT = "fc80ba90f803d79d0383df52c5a4ac5de99ff6fc"  # the commit grocery.sha256 was taken at

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
        files=(Remote(f"GroceryStoreDataset-{_GROCERY_COMMIT}.zip",
                      f"https://github.com/marcusklasson/GroceryStoreDataset/archive/{_GROCERY_COMMIT}.zip", None),),
        expected=tuple(f"grocery/GroceryStoreDataset/dataset/{f}"
                       for f in ("train.txt", "val.txt", "test.txt", "classes.csv")),
        install=_install_grocery,
        source="Klasson et al., WACV 2019: github.com/marcusklasson/GroceryStoreDataset (pinned commit)",
        license="MIT",
        note="GitHub builds archives on request, not byte-stable: the unpacked files are checked instead",
        manifest="grocery.sha256",  # sha256sum of every file the loader reads, at _GROCERY_COMMIT
        manifest_root="grocery/GroceryStoreDataset",
    ),
    DataSet(
        "emotions",
        files=tuple(  # sha256sum at the pinned commit (dlb_tune/checksums/SOURCES.md)
            Remote(name, _EMOTIONS + name, sha, size, installed=f"emotions/{name}") for name, sha, size in (
                ("trainEmotions.csv", "c53b7fa8d9b0fa3da96ba380998ef284e2c1e30bbfec73c8b41cc906cf8fe9d9", 1189823),
                ("testEmotions.csv", "bf43a8178985add29afae12ad19d9e26f65b05023707aae47553f4cce9877c5e", 411109),
            )
        ),
        expected=("emotions/trainEmotions.csv", "emotions/testEmotions.csv"),
        install=_copy_into("emotions"),
        source="tweet-emotion course data: github.com/uriMen/text-classification-with-pytorch (pinned commit)",
        license="unstated (the repository publishes none)",
    ),
    DataSet(
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
    ),
    DataSet(
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
        install=_copy_into("celeba"),
        source="Liu et al., ICCV 2015: mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive)",
        license="non-commercial research use only",
    ),
)}


# --- where the data lives -------------------------------------------------------------------------


def default_data_dir(echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Path:
    """``places.default_data_dir()``: created, and named once, on first use."""
    path = places.default_data_dir()
    if not path.is_dir():
        path.mkdir(parents=True)
        echo(f"data folder: {path} (first use; --data-dir or ${places.DATA_ENV} picks another)")
    return path


def resolve_data_dir(given: str | None) -> Path:
    """``given``, else ``$DLB_TUNE_DATA``, else the per-user default folder."""
    chosen = given or os.environ.get(places.DATA_ENV)
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
            self._verify(ds, f, final)  # left by an earlier run that stopped before installing: checked again
            return final
        folder.mkdir(parents=True, exist_ok=True)
        url = self.url(ds, f)
        self._transfer(url, part, f.size)
        self._verify(ds, f, part)
        os.replace(part, final)
        return final

    def expected_sha256(self, ds: DataSet, f: Remote) -> str | None:
        return self.checksums.get(f"{ds.name}/{f.name}", f.sha256)

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
            cap = ByteCap(part.parent, size and size * DOWNLOAD_MARGIN, f"{DOWNLOAD_MARGIN:g} x its catalog size",
                          url, used=have)
            self._copy(response, part, have, total, url, cap)

    def _copy(self, response, part: Path, have: int, total: int | None, url: str, cap: ByteCap) -> None:
        bar = Progress(part.name.removesuffix(".part"), total, have, self.echo, self.tty)
        with open(part, "ab" if have else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, ValueError) as e:  # reset, timeout, short read
                    raise self._interrupted(url, part, total, e) from None
                if not chunk:
                    break
                try:
                    cap.take(len(chunk))
                except DataError:
                    part.unlink()  # a server that sent too much is not resumed
                    raise
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
        want = self.expected_sha256(ds, f)
        got = sha256_of(part)
        if want is None:
            self.echo(f"{key}: SHA-256 {got}; no stable bytes to pin ({ds.note})")
        elif got != want:
            part.unlink()  # a corrupt file must not be resumed
            _prune(part.parent, self.dest)
            raise DataError(f"{key} failed its checksum: SHA-256 {got}, expected {want}; "
                            f"deleted it, nothing installed")

    def install(self, ds: DataSet, files: dict[str, Path]) -> None:
        stage = self.dest / DOWNLOADS / f"{ds.name}.staging"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        size = sum(path.stat().st_size for path in files.values())
        cap = ByteCap(stage, size * UNPACK_RATIO, f"{UNPACK_RATIO} x the download's size", f"{ds.name}: unpacking")
        downloads, interrupted = self.dest / DOWNLOADS, False
        try:
            ds.install(files, Staging(stage, self.glove_dim, cap))
            if any(self.expected_sha256(ds, f) is None for f in ds.files):
                check_unpacked(ds, stage)
            _merge(stage, self.dest)
        except KeyboardInterrupt:
            interrupted = True  # verified and whole: the same command installs it
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            if not interrupted:  # installed, or failed to install: never reused unchecked
                shutil.rmtree(downloads / ds.name, ignore_errors=True)
            _prune(downloads, self.dest)
        self.echo(f"{ds.name}: installed in {self.dest} ({_mb(ds.size(self.dest))})")


def check_unpacked(ds: DataSet, stage: Path) -> None:
    """A download with no hash to check (GitHub's archives) is checked by what it unpacks to: every
    file of the manifest, each with its pinned SHA-256, and nothing else."""
    pins = {rel: sha for rel, sha in ds.pinned().items() if rel.startswith(f"{ds.manifest_root}/")}
    got = {f.relative_to(stage).as_posix(): f for f in stage.rglob("*") if f.is_file()}
    differ = sorted(rel for rel in set(got) & set(pins) if sha256_of(got[rel]) != pins[rel])
    missing, extra = sorted(set(pins) - set(got)), sorted(set(got) - set(pins))
    if differ or missing or extra:
        first = (differ or missing or extra)[0]
        raise DataError(f"{ds.name}: unpacked files do not match {CHECKSUMS.name}/{ds.manifest} ({len(differ)} differ, "
                        f"{len(missing)} missing, {len(extra)} not listed; first: {first}); deleted, nothing installed")


def verify_lines(root: Path) -> tuple[list[str], bool]:
    """Each installed data set's files against their pinned SHA-256; whether all that are pinned match."""
    lines, ok = [], True
    for ds in CATALOG.values():
        if ds.status(root) == "missing":
            continue
        pins = ds.pinned()
        match, differ, unpinned = 0, [], 0
        for f in ds.installed_files(root):
            want = pins.get(f.relative_to(root).as_posix())
            if want is None:
                unpinned += 1
            elif sha256_of(f) == want:
                match += 1
            else:
                differ.append(f.relative_to(root).as_posix())
        parts = [f"{match} match"] + ([f"{len(differ)} DIFFER (first: {differ[0]})"] if differ else [])
        parts += [f"{unpinned} without a pinned hash"] if unpinned else []
        lines.append(f"  {ds.name:9} " + ", ".join(parts))
        ok = ok and not differ
    return lines, ok


def _prune(folder: Path, stop: Path) -> None:
    """``folder`` and its parents below ``stop`` removed while they are empty."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


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
