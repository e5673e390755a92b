"""``dlb-tune data fetch`` and ``data list``: the data sets of the registered tasks, downloaded,
verified and installed, or listed with their state.

Downloads go to ``<dest>/.downloads/<data set>/<file>.part``, resume from there with an HTTP Range
request, and are renamed only once complete and verified. Installing unpacks into a staging folder
beside the data and moves it into place at the end, so a failure never leaves half a data set.
What a server sends is untrusted until checked (``dlb_tune.datasets``): a download stops past its
catalog size (times a margin) or the free space, and a download that fails its check, or whose
install fails, is deleted, never reused.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dlb_tune.datasets import (CHECKSUMS, CHUNK, DOWNLOAD_MARGIN, DOWNLOADS, TIMEOUT_S, UNPACK_RATIO, ByteCap,
                               DataSet, Remote, Staging, mb, sha256_of)
from dlb_tune.tasks import DataError, UnknownTask, all_tasks, get_task


def catalog() -> dict[str, DataSet]:
    """Every data set a registered task declares, by name (a set two tasks read, once)."""
    return {ds.name: ds for task in all_tasks().values() for ds in task.data_sets}


def data_sets_for(target: str) -> list[DataSet]:
    """``all``, a data set's name, or a task's name (its ``data_sets``)."""
    sets = catalog()
    if target == "all":
        return list(sets.values())
    if target in sets:
        return [sets[target]]
    try:
        declared = get_task(target).data_sets
    except UnknownTask:
        raise DataError(f"unknown task or data set '{target}'; known: all, "
                        f"{', '.join(sets)}, or a task name (`dlb-tune tasks`)") from None
    if not declared:
        raise DataError(f"task '{target}' names no data set to fetch")
    return list(declared)


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
        return DataError(f"download of {url} interrupted at {mb(got)} of {mb(total)} ({why}); "
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
        self.echo(f"{ds.name}: installed in {self.dest} ({mb(ds.size(self.dest))})")


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
    for ds in catalog().values():
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


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A download's progress: on a terminal rich's bar redrawn in place (on stderr); elsewhere
    (logs, CI) a plain line per quarter. Either way a last line with the size and speed."""

    def __init__(self, name: str, total: int | None, start: int, echo, tty: bool) -> None:
        self.name, self.total, self.done_bytes, self.echo = name, total, start, echo
        self.t0, self.new, self.quarter, self.bar = time.monotonic(), 0, -1, None
        if start:
            echo(f"{name}: resuming at {mb(start)}")
        if tty:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress as Bar, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                           TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task(name, total=total, completed=start)
            self.bar.start()

    def update(self, n: int) -> None:
        self.done_bytes += n
        self.new += n
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done_bytes)
        elif self.total:
            q = 4 * self.done_bytes // self.total
            if self.quarter < q < 4:
                self.quarter = q
                self.echo(self.line())

    def line(self) -> str:
        speed = self.new / max(time.monotonic() - self.t0, 1e-6)
        pct = f"{100 * self.done_bytes / self.total:3.0f}% " if self.total else ""
        return f"{self.name}: {pct}{mb(self.done_bytes)} of {mb(self.total)} at {speed / 1e6:.1f} MB/s"

    def done(self) -> None:
        if self.bar is not None:
            self.bar.stop()  # transient: the bar goes, the summary line stays
        self.echo(self.line())


# --- listing -------------------------------------------------------------------------------------


def list_lines(root: Path, columns: int | None = None) -> list[str]:
    """A row per data set, fitted to the terminal; the sources below it, each on lines of its own
    (a URL is one long word: in a column it would be cut)."""
    from dlb_tune.show import table, wrapped

    header = ["data set", "status", "size", "tasks", "license"]
    users, rows = _users(), []
    for ds in catalog().values():
        status = ds.status(root)
        size = mb(ds.size(root)) if status != "missing" else "-"
        rows.append((ds.name, status, size, ",".join(users.get(ds.name, [])) or "-", ds.license))
    lines = [f"data folder: {root}"] + table(header, rows, whole=header[:4], right=["size"], columns_wide=columns)
    lines.append("sources:")
    for ds in catalog().values():
        lines += wrapped(f"{ds.name}: {ds.source}", columns, indent="    ")
    return lines


def _users() -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for name, task in all_tasks().items():
        for ds in task.data_sets:
            users.setdefault(ds.name, []).append(name)
    return users
