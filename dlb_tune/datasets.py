"""A data set as a task declares it (``Task.data_sets``): the files its publisher serves, each with
its pinned SHA-256, and how to install what the task's loader reads into the data folder; the
installers' checks on untrusted archives; and where the data folder is.

``dlb-tune data fetch TASK|all`` (``dlb_tune.fetch``) downloads each file from its publisher (or
from ``--mirror URL``, which replaces every publisher's base address by ``URL/<data set>/<file>``),
checks it against its pinned SHA-256, and installs into the data folder only what the loaders read,
in their layout.

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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dlb_tune import places
from dlb_tune.tasks.base import DataError

DOWNLOADS = ".downloads"  # under the data folder: partial and verified downloads
TIMEOUT_S = 10  # per connect and per read: an unreachable mirror fails in seconds, not minutes
CHUNK = 1 << 20
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
        return DataError(f"{self.what}: more than {mb(self.limit)} ({self.why}); stopped, nothing installed")


# --- installing: what each loader reads, from what each publisher serves -------------------------


def copy_capped(src, dst, cap: ByteCap) -> None:
    while chunk := src.read(CHUNK):
        cap.take(len(chunk))
        dst.write(chunk)


def extract(archive: Path, stage: Staging, into: str, keep: Callable[[str], str | None]) -> int:
    """Members of a zip for which ``keep(name)`` gives a relative path, written there under
    ``stage.folder / into``; the count. Every member is checked before anything is written."""
    dest = stage.folder / into
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            for info in members:
                check_member(archive, info)
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
                    copy_capped(src, dst, stage.cap)
    except (zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{archive.name} is not a readable zip archive: {e}") from None
    if not wanted:
        raise DataError(f"{archive.name} holds none of the files the loaders read")
    return len(wanted)


def check_member(archive: Path, info: zipfile.ZipInfo) -> None:
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


def copy_into(folder: str, keep: Callable[[str], str | None] = lambda m: None) -> Callable[[dict[str, Path], Staging], None]:
    """An installer that copies each file into ``folder`` as it is, and unpacks each zip there
    (the members for which ``keep`` gives a relative path)."""
    def install(files: dict[str, Path], stage: Staging) -> None:
        (stage.folder / folder).mkdir(parents=True)
        for name, path in files.items():
            if name.endswith(".zip"):
                extract(path, stage, folder, keep)
            else:
                with open(path, "rb") as src, open(stage.folder / folder / name, "wb") as dst:
                    copy_capped(src, dst, stage.cap)
    return install


def gunzip_into(folder: str) -> Callable[[dict[str, Path], Staging], None]:
    """An installer that writes each ``.gz`` file, decompressed, into ``folder``."""
    def install(files: dict[str, Path], stage: Staging) -> None:
        out = stage.folder / folder
        out.mkdir(parents=True)
        for name, path in files.items():
            try:
                with gzip.open(path) as src, open(out / name.removesuffix(".gz"), "wb") as dst:
                    copy_capped(src, dst, stage.cap)
            except (gzip.BadGzipFile, EOFError) as e:
                raise DataError(f"{name} is not a readable gzip file: {e}") from None
    return install


def unzip_one(into: str, keep: Callable[[str], str | None]) -> Callable[[dict[str, Path], Staging], None]:
    """An installer for one zip: the members ``keep`` maps to a relative path, under ``into``."""
    def install(files: dict[str, Path], stage: Staging) -> None:
        (archive,) = files.values()
        extract(archive, stage, into, keep)
    return install


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


def mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"
