"""`dlb-tune data fetch` and `data list` against a real HTTP server on 127.0.0.1.

The server is python's ``http.server`` in a thread, with Range support; it serves archives built
here from the real data folder in each publisher's format (gzip'd IDX files, GitHub's repository
zip, the CSV files, Stanford's GloVe zip, CelebA's zip and text files), trimmed so that the four
smoke sweeps stay small. They are not the publishers' bytes, so the tests hand ``--checksums`` a
SHA256SUMS file of their own, as a user of a repackaging mirror would. A guard refuses every
connection this process opens to anything but 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import time
import zipfile
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.datasets import CATALOG, DOWNLOADS, default_data_dir
from dlb_tune.seeds import sweep_with_seeds
from dlb_tune.sweep import SweepOptions
from dlb_tune.tasks import DataError, all_tasks

runner = CliRunner()


_connect = socket.create_connection


def localhost_only(address, *args, **kwargs):
    assert address[0] in ("127.0.0.1", "localhost"), f"a test tried to reach {address}"
    return _connect(address, *args, **kwargs)


# --- the mirror: publishers' formats, built from the real data ------------------------------------


def idx_head(src: Path, n: int) -> bytes:
    """The first ``n`` items of an IDX file, with its count rewritten."""
    data = src.read_bytes()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    item = 1
    for d in shape[1:]:
        item *= d
    start = 4 + 4 * dims
    return data[:4] + struct.pack(">I", n) + data[8:start] + data[start:start + n * item]


def build_mnist(data: Path, out: Path) -> None:
    # 6,000 training images: more than the 5,000 the validation split takes
    for name, n in (("train-images-idx3-ubyte", 6000), ("train-labels-idx1-ubyte", 6000),
                    ("t10k-images-idx3-ubyte", 600), ("t10k-labels-idx1-ubyte", 600)):
        (out / f"{name}.gz").write_bytes(gzip.compress(idx_head(data / "MNIST/raw" / name, n), compresslevel=1))


def build_grocery(data: Path, out: Path) -> None:
    """GitHub's archive layout: ``<repo>-<ref>/dataset/...``, every 10th image of each split."""
    src = data / "grocery/GroceryStoreDataset/dataset"
    with zipfile.ZipFile(out / "GroceryStoreDataset-master.zip", "w") as z:
        z.write(src / "classes.csv", "GroceryStoreDataset-master/dataset/classes.csv")
        z.writestr("GroceryStoreDataset-master/README.md", "not needed by the loader")
        z.writestr("GroceryStoreDataset-master/dataset/iconic-images-and-descriptions/x.txt", "not needed")
        for split in ("train", "val", "test"):
            lines = (src / f"{split}.txt").read_text().splitlines()[::10]
            z.writestr(f"GroceryStoreDataset-master/dataset/{split}.txt", "\n".join(lines) + "\n")
            for line in lines:
                rel = line.split(",")[0].strip().lstrip("/")
                z.write(src / rel, f"GroceryStoreDataset-master/dataset/{rel}")


def build_celeba(data: Path, out: Path) -> None:
    src = data / "celeba"
    lines = (src / "list_eval_partition.txt").read_text().splitlines()[::20]
    (out / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    for name in ("identity_CelebA.txt", "list_attr_celeba.txt"):
        (out / name).write_bytes((src / name).read_bytes())
    with zipfile.ZipFile(out / "img_align_celeba.zip", "w") as z:
        for line in lines:
            name = line.split()[0]
            z.write(src / "img_align_celeba" / name, f"img_align_celeba/{name}")


def build_glove(data: Path, out: Path) -> None:
    """Stanford's zip holds all four sizes; here the real 25-d subset and a stand-in 50-d file."""
    with zipfile.ZipFile(out / "glove.twitter.27B.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(data / "glove/glove.twitter.27B.25d.subset12k.txt", "glove.twitter.27B.25d.txt")
        z.writestr("glove.twitter.27B.50d.txt", "the 0.1\n")


def build_emotions(data: Path, out: Path) -> None:
    for name in ("trainEmotions.csv", "testEmotions.csv"):
        (out / name).write_bytes((data / "emotions" / name).read_bytes())


BUILDERS = {"mnist": build_mnist, "grocery": build_grocery, "emotions": build_emotions, "glove": build_glove,
            "celeba": build_celeba}


def write_sums(root: Path) -> Path:
    sums = root / "SHA256SUMS"
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}"
             for p in sorted(root.glob("*/*"))]
    sums.write_text("\n".join(lines) + "\n")
    return sums


class Mirror(http.server.ThreadingHTTPServer):
    """Serves ``root`` with Range support; records each request; can cut or corrupt a file once."""

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root, self.requests, self.cut, self.corrupt = root, [], {}, set()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv: Mirror = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        path = srv.root / self.path.lstrip("/")
        if not path.is_file():
            return self.send_error(404)
        body = bytearray(path.read_bytes())
        if self.path in srv.corrupt:
            body[len(body) // 2] ^= 0xFF
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        stop = srv.cut.pop(self.path, len(body))  # a cut file: the connection drops midway, once
        self.wfile.write(bytes(body[start:stop]))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("mirror")
    for name, build in BUILDERS.items():
        (root / name).mkdir()
        build(data_dir, root / name)
    server = Mirror(root)
    server.sums = write_sums(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def fetch(mirror, dest: Path, target: str = "all", *extra: str, url: str | None = None):
    """`dlb-tune data fetch` in this process, where only 127.0.0.1 may be reached."""
    args = ["data", "fetch", target, "--dest", str(dest), "--mirror", url or mirror.url]
    args += ["--checksums", str(mirror.sums)] if mirror else []
    with mock.patch.object(socket, "create_connection", localhost_only):
        return runner.invoke(app, args + list(extra))


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# --- fetch, then every task sweeps on what it fetched ----------------------------------------------


@pytest.mark.slow
def test_fetch_all_installs_what_each_task_sweeps_on(mirror, tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))  # decode the trimmed images afresh
    dest = tmp_path / "data"
    dest.mkdir()
    result = fetch(mirror, dest, "all", "--glove-dim", "25")
    assert result.exit_code == 0, result.output
    assert {p for p, _ in mirror.requests} >= {f"/{d}/{f.name}" for d in CATALOG.values() for f in d.files}
    assert not (dest / DOWNLOADS).exists()  # archives gone once installed
    # only what the loaders read: no iconic images, no other GloVe size, no archive left over
    assert not list(dest.rglob("iconic*")) and not list(dest.rglob("*.zip"))
    assert [p.name for p in (dest / "glove").iterdir()] == ["glove.twitter.27B.25d.txt"]
    listing = runner.invoke(app, ["data", "list", "--dest", str(dest)]).output
    assert all(f"{name}  present" in " ".join(listing.split()).replace(" present", "  present")
               for name in CATALOG), listing
    for task in all_tasks():
        opts = SweepOptions(task=task, data_dir=str(dest), smoke=True, num_samples=1, storage=str(tmp_path / "runs"),
                            name=task, search="random", cpus_per_trial=2)
        final = sweep_with_seeds(opts, echo=lambda line: None)
        assert final["test"] and not final.get("errors") and "test_error" not in final, (task, final)


# --- failures: one line, nothing half-written ------------------------------------------------------


def test_corrupt_archive_fails_its_checksum_and_installs_nothing(mirror, tmp_path):
    mirror.corrupt.add("/grocery/GroceryStoreDataset-master.zip")
    try:
        result = fetch(mirror, tmp_path, "cnn")
    finally:
        mirror.corrupt.clear()
    assert result.exit_code == 1
    assert "grocery/GroceryStoreDataset-master.zip failed its checksum" in one_error_line(result)
    assert not (tmp_path / "grocery").exists()
    assert not list((tmp_path / DOWNLOADS).rglob("*.part"))  # a corrupt file is never resumed
    assert "grocery   partial" not in runner.invoke(app, ["data", "list", "--dest", str(tmp_path)]).output


def test_interrupted_download_resumes_where_it_stopped(mirror, tmp_path):
    path = "/celeba/img_align_celeba.zip"
    size = (mirror.root / path.lstrip("/")).stat().st_size
    mirror.cut[path] = size // 3
    first = fetch(mirror, tmp_path, "vae")
    assert first.exit_code == 1
    assert "interrupted" in one_error_line(first) and "again to resume" in first.output
    assert not (tmp_path / "celeba").exists()
    status = runner.invoke(app, ["data", "list", "--dest", str(tmp_path)]).output
    assert any(line.split()[:2] == ["celeba", "partial"] for line in status.splitlines()), status
    mirror.requests.clear()
    second = fetch(mirror, tmp_path, "vae")
    assert second.exit_code == 0, second.output
    assert (path, f"bytes={size // 3}-") in mirror.requests
    assert len(list((tmp_path / "celeba/img_align_celeba").glob("*.jpg"))) == 300


def test_unreachable_mirror_fails_in_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    result = fetch(None, tmp_path, "fcn", url=f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert f"cannot reach http://127.0.0.1:{port}/mnist/" in one_error_line(result)
    assert time.monotonic() - t0 < 60  # a generous ceiling: the point is seconds, not Ray's 10-minute retries
    assert not (tmp_path / "MNIST").exists()


def test_unknown_target_names_the_choices(tmp_path):
    result = runner.invoke(app, ["data", "fetch", "mnst", "--dest", str(tmp_path)])
    assert result.exit_code == 2
    assert "known: all, mnist, grocery" in one_error_line(result)


# --- missing data names the command that fetches it ------------------------------------------------


@pytest.mark.parametrize("task", [n for n, t in all_tasks().items() if t.data_sets])
def test_missing_data_message_names_data_fetch(task, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(socket, "create_connection", offline)  # fcn would otherwise try torchvision's download
    task_cls = all_tasks()[task]
    with pytest.raises(DataError, match=f"`dlb-tune data fetch {task}`"):
        task_cls.load_data(tmp_path, task_cls.Config(), limit=8)


def test_default_data_folder_is_per_user_and_named_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    said = []
    first = default_data_dir(said.append)
    again = default_data_dir(said.append)
    assert first == again == tmp_path / "dlb-tune" / "data" and first.is_dir()
    assert len(said) == 1 and str(first) in said[0]
    monkeypatch.delenv("DLB_TUNE_DATA", raising=False)
    assert SweepOptions(task="fcn").resolved_data_dir() == first
